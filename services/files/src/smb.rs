//! Minimal SMB2 client used to probe a supervised smbd: which dialect it picks,
//! whether it insists on signing, and whether an anonymous tree connect (to
//! a guest share, or IPC$) works. Hand-rolled (no SMB crate) because we need only four requests and
//! want every byte of a hostile or broken reply to be checked, never trusted.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

/// What one probe learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmbProbe {
    /// The dialect the server chose, e.g. "3.1.1", "3.0.2", "2.1".
    pub dialect: String,
    /// The server's NEGOTIATE SecurityMode says signing is required.
    pub signing_required: bool,
    /// How the anonymous session setup + TREE_CONNECT to the share ended.
    pub tree_connect: TreeConnect,
}

/// How the anonymous session setup + TREE_CONNECT to the share ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeConnect {
    /// An anonymous session was set up and \\<ip>\<share> connected.
    Connected,
    /// The server answered with a proper SMB2 error at session setup or tree
    /// connect (e.g. it requires encryption, or refuses anonymous): the NT
    /// status name or hex, e.g. "STATUS_ACCESS_DENIED" or "0xc0000022".
    Refused { step: &'static str, status: String },
}

const NEGOTIATE: u16 = 0;
const SESSION_SETUP: u16 = 1;
const LOGOFF: u16 = 2;
const TREE_CONNECT: u16 = 3;

const STATUS_SUCCESS: u32 = 0;
const STATUS_PENDING: u32 = 0x0000_0103;
const STATUS_MORE_PROCESSING_REQUIRED: u32 = 0xC000_0016;

const HEADER_LEN: usize = 64;
/// Real replies here are a few hundred bytes; refuse to buffer a hostile length.
const MAX_FRAME: usize = 1 << 20;
const DIALECTS: [u16; 4] = [0x0210, 0x0300, 0x0302, 0x0311];
/// NegotiateContexts start 8-aligned after the fixed body and dialect list.
const CTX_OFFSET: usize = (HEADER_LEN + 36 + 2 * DIALECTS.len() + 7) & !7;
/// UNICODE | REQUEST_TARGET | NTLM | ALWAYS_SIGN | EXTENDED_SESSIONSECURITY | 128 | 56.
const NTLM_FLAGS: u32 = 0xA008_8205;
const NTLM_ANONYMOUS: u32 = 0x0000_0800;

/// NEGOTIATE, anonymous SESSION_SETUP (NTLMSSP, two legs), TREE_CONNECT
/// \\<ip>\<share> (`IPC$`, or a guest share), then LOGOFF, over one TCP connection to `addr`, all within
/// `timeout`. Err: no connection, timeout, or a reply that is not well-formed
/// SMB2 (the message names the step and what was wrong).
pub async fn probe(addr: SocketAddr, share: &str, timeout: Duration) -> Result<SmbProbe, String> {
    // Capped so an absurd timeout cannot overflow Instant arithmetic.
    let deadline = Instant::now() + timeout.min(Duration::from_secs(86_400));
    let stream = match timeout_at(deadline, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("connect {addr}: {e}")),
        Err(_) => return Err(format!("connect {addr}: timed out after {timeout:?}")),
    };
    let _ = stream.set_nodelay(true);
    let mut c = Conn {
        stream,
        deadline,
        timeout,
        message_id: 0,
        session_id: 0,
    };
    let body = negotiate_body(random_bytes(), random_bytes());
    let reply = c.exchange("NEGOTIATE", NEGOTIATE, &body).await?;
    let (dialect, signing_required) = parse_negotiate(&reply)?;
    let tree_connect = c.session_and_tree(addr, share).await;
    if c.session_id != 0 && tree_connect.is_ok() {
        // Courtesy only; skipped after an Err, where it could only wait out the deadline.
        let _ = c.exchange("LOGOFF", LOGOFF, &[4, 0, 0, 0]).await;
    }
    Ok(SmbProbe {
        dialect,
        signing_required,
        tree_connect: tree_connect?,
    })
}

struct Conn {
    stream: TcpStream,
    deadline: Instant,
    timeout: Duration,
    message_id: u64,
    session_id: u64,
}

/// One validated SMB2 reply; `msg` keeps the header because body offsets
/// (security buffers etc.) are relative to the header start.
#[derive(Debug)]
struct Reply {
    status: u32,
    session_id: u64,
    msg: Vec<u8>,
}

impl Reply {
    fn body(&self) -> &[u8] {
        self.msg.get(HEADER_LEN..).unwrap_or(&[])
    }
}

impl Conn {
    /// Send one request and wait (until the overall deadline) for its reply,
    /// skipping interim STATUS_PENDING answers.
    async fn exchange(&mut self, step: &str, cmd: u16, body: &[u8]) -> Result<Reply, String> {
        let id = self.message_id;
        self.message_id += 1;
        let charge = u16::from(cmd != NEGOTIATE);
        let mut msg = header(cmd, charge, id, self.session_id);
        msg.extend_from_slice(body);
        // Direct TCP framing: 0x00 then a 24-bit length; ours are tiny.
        let mut frame = (msg.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&msg);
        let stream = &mut self.stream;
        let io = async move {
            stream
                .write_all(&frame)
                .await
                .map_err(|e| format!("send: {e}"))?;
            loop {
                let reply = parse_reply(&read_frame(stream).await?, cmd, id)?;
                if reply.status != STATUS_PENDING {
                    return Ok(reply);
                }
            }
        };
        match timeout_at(self.deadline, io).await {
            Ok(r) => r.map_err(|e: String| format!("{step}: {e}")),
            Err(_) => Err(format!("{step}: no answer within {:?}", self.timeout)),
        }
    }

    /// Anonymous NTLMSSP in two legs, then TREE_CONNECT to `share`.
    async fn session_and_tree(
        &mut self,
        addr: SocketAddr,
        share: &str,
    ) -> Result<TreeConnect, String> {
        const SS: &str = "SESSION_SETUP";
        let r = self
            .exchange(SS, SESSION_SETUP, &session_setup_body(&ntlm_negotiate()))
            .await?;
        if r.status != STATUS_MORE_PROCESSING_REQUIRED {
            return refused(SS, &r);
        }
        self.session_id = r.session_id;
        let blob = security_buffer(&r).ok_or("SESSION_SETUP: bad security buffer bounds")?;
        let at = blob.windows(8).position(|w| w == b"NTLMSSP\0");
        if at.and_then(|p| u32_at(blob, p + 8)) != Some(2) {
            return Err("SESSION_SETUP: no NTLMSSP CHALLENGE in the reply".into());
        }
        let r = self
            .exchange(SS, SESSION_SETUP, &session_setup_body(&ntlm_authenticate()))
            .await?;
        if r.status != STATUS_SUCCESS {
            return refused(SS, &r);
        }
        expect_size(SS, &r, 9)?;
        const TC: &str = "TREE_CONNECT";
        let r = self
            .exchange(TC, TREE_CONNECT, &tree_connect_body(addr, share))
            .await?;
        if r.status != STATUS_SUCCESS {
            return refused(TC, &r);
        }
        expect_size(TC, &r, 16)?;
        Ok(TreeConnect::Connected)
    }
}

/// An error reply is only a Refused if it is a well-formed ERROR body.
fn refused(step: &'static str, r: &Reply) -> Result<TreeConnect, String> {
    if r.status == STATUS_SUCCESS || r.status == STATUS_MORE_PROCESSING_REQUIRED {
        return Err(format!(
            "{step}: unexpected status {}",
            status_name(r.status)
        ));
    }
    expect_size(step, r, 9)?;
    Ok(TreeConnect::Refused {
        step,
        status: status_name(r.status),
    })
}

fn expect_size(step: &str, r: &Reply, size: u16) -> Result<(), String> {
    match u16_at(r.body(), 0) {
        Some(s) if s == size && r.body().len() >= usize::from(size & !1) => Ok(()),
        Some(s) => Err(format!(
            "{step}: body StructureSize {s} (want {size}) or body too short"
        )),
        None => Err(format!("{step}: reply has no body")),
    }
}

fn security_buffer(r: &Reply) -> Option<&[u8]> {
    let off = usize::from(u16_at(r.body(), 4)?);
    let len = usize::from(u16_at(r.body(), 6)?);
    r.msg.get(off..off.checked_add(len)?)
}

async fn read_frame(s: &mut TcpStream) -> Result<Vec<u8>, String> {
    let eof = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => "server closed the connection".to_string(),
        _ => format!("read: {e}"),
    };
    loop {
        let mut nb = [0u8; 4];
        s.read_exact(&mut nb).await.map_err(eof)?;
        let [kind, a, b, c] = nb;
        let len = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
        match kind {
            0x00 => {}
            0x85 if len == 0 => continue, // NetBIOS keepalive
            k => {
                return Err(format!(
                    "not an SMB direct-TCP frame (first byte 0x{k:02x})"
                ))
            }
        }
        if len > MAX_FRAME {
            return Err(format!("frame length {len} is implausible"));
        }
        let mut msg = vec![0; len];
        s.read_exact(&mut msg).await.map_err(eof)?;
        return Ok(msg);
    }
}

/// Validate the SMB2 header of a reply to request `id` of command `cmd`.
fn parse_reply(msg: &[u8], cmd: u16, id: u64) -> Result<Reply, String> {
    if msg.len() < HEADER_LEN {
        return Err(format!(
            "response shorter than its header ({} bytes)",
            msg.len()
        ));
    }
    match msg.get(..4) {
        Some(b"\xfeSMB") => {}
        Some(b"\xffSMB") => return Err("server answered in SMB1".into()),
        Some(b"\xfdSMB") => return Err("reply is encrypted (transform header)".into()),
        _ => return Err("bad ProtocolId (not SMB2)".into()),
    }
    // In range: the length was checked above.
    let size = u16_at(msg, 4).unwrap_or(0);
    let command = u16_at(msg, 12).unwrap_or(u16::MAX);
    let flags = u32_at(msg, 16).unwrap_or(0);
    let mid = u64_at(msg, 24).unwrap_or(u64::MAX);
    if size != 64 || flags & 1 == 0 {
        return Err(format!(
            "bad header (StructureSize {size}, Flags 0x{flags:x})"
        ));
    }
    if command != cmd || mid != id {
        return Err(format!(
            "reply for command {command}/message {mid}, want {cmd}/{id}"
        ));
    }
    Ok(Reply {
        status: u32_at(msg, 8).unwrap_or(u32::MAX),
        session_id: u64_at(msg, 40).unwrap_or(0),
        msg: msg.to_vec(),
    })
}

/// Dialect name and SecurityMode bit 2 (SIGNING_REQUIRED) from a NEGOTIATE reply.
fn parse_negotiate(r: &Reply) -> Result<(String, bool), String> {
    if r.status != STATUS_SUCCESS {
        return Err(format!(
            "NEGOTIATE: server answered {}",
            status_name(r.status)
        ));
    }
    let b = r.body();
    if u16_at(b, 0) != Some(65) || b.len() < 64 {
        return Err(format!(
            "NEGOTIATE: malformed response body ({} bytes)",
            b.len()
        ));
    }
    let mode = u16_at(b, 2).unwrap_or(0);
    let dialect = match u16_at(b, 4).unwrap_or(0) {
        0x0210 => "2.1",
        0x0300 => "3.0",
        0x0302 => "3.0.2",
        0x0311 => "3.1.1",
        d => {
            return Err(format!(
                "NEGOTIATE: server chose dialect 0x{d:04x}, not one offered"
            ))
        }
    };
    Ok((dialect.to_string(), mode & 2 != 0))
}

fn status_name(s: u32) -> String {
    let name = match s {
        0 => "STATUS_SUCCESS",
        0xC000_0016 => "STATUS_MORE_PROCESSING_REQUIRED",
        0xC000_0022 => "STATUS_ACCESS_DENIED",
        0xC000_006D => "STATUS_LOGON_FAILURE",
        0xC000_00CC => "STATUS_BAD_NETWORK_NAME",
        0xC000_00BB => "STATUS_NOT_SUPPORTED",
        0xC000_000D => "STATUS_INVALID_PARAMETER",
        0xC000_0203 => "STATUS_USER_SESSION_DELETED",
        _ => return format!("0x{s:08x}"),
    };
    name.to_string()
}

/// Checked little-endian reads: a short reply yields None, never a panic.
fn at<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    b.get(off..off.checked_add(N)?)?.try_into().ok()
}
fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    at(b, off).map(u16::from_le_bytes)
}
fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    at(b, off).map(u32::from_le_bytes)
}
fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    at(b, off).map(u64::from_le_bytes)
}
/// Lengths we put on the wire are of small constant-sized buffers.
fn len16(b: &[u8]) -> [u8; 2] {
    u16::try_from(b.len()).unwrap_or(u16::MAX).to_le_bytes()
}

fn header(cmd: u16, charge: u16, message_id: u64, session_id: u64) -> Vec<u8> {
    [
        &b"\xfeSMB\x40\0"[..], // ProtocolId, StructureSize
        &charge.to_le_bytes(),
        &[0; 4], // ChannelSequence/Status
        &cmd.to_le_bytes(),
        &[31, 0, 0, 0, 0, 0, 0, 0, 0, 0], // CreditRequest, Flags, NextCommand
        &message_id.to_le_bytes(),
        &[0; 8], // ProcessId, TreeId: LOGOFF needs none
        &session_id.to_le_bytes(),
        &[0; 16], // Signature: anonymous sessions are unsigned
    ]
    .concat()
}

/// NEGOTIATE body offering 2.1..3.1.1, with the 3.1.1 preauth (SHA-512) and
/// encryption (AES-128-GCM, AES-128-CCM) contexts a modern client sends.
fn negotiate_body(guid: [u8; 16], salt: [u8; 32]) -> Vec<u8> {
    let mut b = Vec::with_capacity(128);
    b.extend_from_slice(&36u16.to_le_bytes());
    b.extend_from_slice(&(DIALECTS.len() as u16).to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes()); // SecurityMode: signing enabled
    b.extend_from_slice(&[0; 2]);
    b.extend_from_slice(&0x40u32.to_le_bytes()); // Capabilities: ENCRYPTION
    b.extend_from_slice(&guid);
    b.extend_from_slice(&(CTX_OFFSET as u32).to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes()); // NegotiateContextCount
    b.extend_from_slice(&[0; 2]);
    for d in DIALECTS {
        b.extend_from_slice(&d.to_le_bytes());
    }
    let mut preauth = vec![1, 0, 32, 0, 1, 0]; // 1 algorithm, 32-byte salt, SHA-512
    preauth.extend_from_slice(&salt);
    for (kind, data) in [(1u16, preauth), (2, vec![2, 0, 2, 0, 1, 0])] {
        // Each context starts 8-aligned (relative to the header); the first at CTX_OFFSET.
        b.resize((HEADER_LEN + b.len()).next_multiple_of(8) - HEADER_LEN, 0);
        b.extend_from_slice(&kind.to_le_bytes());
        b.extend_from_slice(&len16(&data));
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&data);
    }
    b
}

fn session_setup_body(token: &[u8]) -> Vec<u8> {
    let mut b = vec![25, 0, 0, 1]; // StructureSize, Flags, SecurityMode: signing enabled
    b.extend_from_slice(&[0; 8]); // Capabilities, Channel
    b.extend_from_slice(&((HEADER_LEN + 24) as u16).to_le_bytes());
    b.extend_from_slice(&len16(token));
    b.extend_from_slice(&[0; 8]); // PreviousSessionId
    b.extend_from_slice(token);
    b
}

fn tree_connect_body(addr: SocketAddr, share: &str) -> Vec<u8> {
    let path: Vec<u8> = format!(r"\\{}\{share}", addr.ip())
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let mut b = vec![9, 0, 0, 0]; // StructureSize, Flags
    b.extend_from_slice(&((HEADER_LEN + 8) as u16).to_le_bytes());
    b.extend_from_slice(&len16(&path));
    b.extend_from_slice(&path);
    b
}

fn ntlm_negotiate() -> Vec<u8> {
    let mut m = b"NTLMSSP\0\x01\0\0\0".to_vec();
    m.extend_from_slice(&NTLM_FLAGS.to_le_bytes());
    m.extend_from_slice(&[0; 16]); // empty DomainName and Workstation fields
    m
}

/// AUTHENTICATE with empty user/domain/workstation, a 1-byte zero LM response
/// and empty NT response: the NTLMSSP spelling of "anonymous".
fn ntlm_authenticate() -> Vec<u8> {
    let mut m = b"NTLMSSP\0\x03\0\0\0".to_vec();
    m.extend_from_slice(&[1, 0, 1, 0, 64, 0, 0, 0]); // LM: 1 byte at offset 64
    for _ in 0..5 {
        // NT, domain, user, workstation, session key: empty
        m.extend_from_slice(&[0, 0, 0, 0, 65, 0, 0, 0]);
    }
    m.extend_from_slice(&(NTLM_FLAGS | NTLM_ANONYMOUS).to_le_bytes());
    m.push(0);
    m
}

/// Salt and client GUID need only be unpredictable-ish, not cryptographic:
/// std's RandomState is randomly keyed per process, mixed with time and pid.
fn random_bytes<const N: usize>() -> [u8; N] {
    let state = RandomState::new();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut out = [0u8; N];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let mut h = state.build_hasher();
        h.write_u128(nanos);
        h.write_u32(std::process::id());
        h.write_usize(i);
        for (d, s) in chunk.iter_mut().zip(h.finish().to_le_bytes()) {
            *d = s;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// NEGOTIATE response captured from Samba 4.17 smbd (default conf, 3.1.1).
    const SAMBA_NEGOTIATE: &str = "\
        fe534d42400000000000000000000100010000000000000000000000000000000000000000000000\
        0000000000000000000000000000000000000000000000004100010011030200766d000000000000\
        0000000000000000070000000000800000008000000080006ae4f7c7f981dd010000000000000000\
        80004a00d0000000604806062b0601050502a03e303ca00e300c060a2b06010401823702020aa32a\
        3028a0261b246e6f745f646566696e65645f696e5f5246433431373840706c656173655f69676e6f\
        72650000000000000100260000000000010020000100508da4b27fed20e4d8f4e35833c7cb7ceb7a\
        265512a806775dec0ecc23cf662c0000020004000000000001000200";

    fn unhex(h: &str) -> Vec<u8> {
        (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn negotiate_request_encoding() {
        let mut m = header(NEGOTIATE, 0, 0, 0);
        m.extend(negotiate_body([7; 16], [9; 32]));
        assert_eq!(&m[..4], b"\xfeSMB");
        assert_eq!(u16_at(&m, 4), Some(64));
        assert_eq!(u16_at(&m, 12), Some(NEGOTIATE));
        assert_eq!(u64_at(&m, 24), Some(0));
        let b = &m[64..];
        assert_eq!(u16_at(b, 0), Some(36));
        assert_eq!(u16_at(b, 2), Some(4));
        assert_eq!(&b[12..28], &[7; 16]);
        let dialects: Vec<_> = (0..4).map(|i| u16_at(b, 36 + 2 * i).unwrap()).collect();
        assert_eq!(dialects, [0x0210, 0x0300, 0x0302, 0x0311]);
        assert_eq!(u32_at(b, 28), Some(112));
        assert_eq!(u16_at(b, 32), Some(2));
        // Preauth context at 112: SHA-512 with a 32-byte salt.
        assert_eq!((u16_at(&m, 112), u16_at(&m, 114)), (Some(1), Some(38)));
        assert_eq!(&m[120..126], &[1, 0, 32, 0, 1, 0]);
        assert_eq!(&m[126..158], &[9; 32]);
        // Encryption context, 8-aligned at 160: GCM then CCM.
        assert_eq!((u16_at(&m, 160), u16_at(&m, 162)), (Some(2), Some(6)));
        assert_eq!(&m[168..], &[2, 0, 2, 0, 1, 0]);
    }

    #[test]
    fn parses_captured_samba_negotiate() {
        let mut msg = unhex(SAMBA_NEGOTIATE);
        let r = parse_reply(&msg, NEGOTIATE, 0).unwrap();
        assert_eq!(parse_negotiate(&r), Ok(("3.1.1".to_string(), false)));
        msg[66] = 3; // SecurityMode: SIGNING_ENABLED | SIGNING_REQUIRED
        let r = parse_reply(&msg, NEGOTIATE, 0).unwrap();
        assert_eq!(parse_negotiate(&r), Ok(("3.1.1".to_string(), true)));
        assert!(
            parse_reply(&msg, NEGOTIATE, 1).is_err(),
            "wrong MessageId accepted"
        );
    }

    #[test]
    fn truncated_or_garbage_negotiate_is_err() {
        let msg = unhex(SAMBA_NEGOTIATE);
        for n in 0..128 {
            let res = parse_reply(&msg[..n], NEGOTIATE, 0).and_then(|r| parse_negotiate(&r));
            assert!(res.is_err(), "{n} bytes accepted");
        }
        assert_eq!(
            parse_reply(&msg[..12], NEGOTIATE, 0).unwrap_err(),
            "response shorter than its header (12 bytes)"
        );
        let garbage: Vec<u8> = (0..300u32).map(|i| (i * 37 % 251) as u8).collect();
        assert!(parse_reply(&garbage, NEGOTIATE, 0).is_err());
        let mut bad = msg.clone();
        bad[68..70].copy_from_slice(&0x0202u16.to_le_bytes()); // dialect not offered
        let r = parse_reply(&bad, NEGOTIATE, 0).unwrap();
        assert!(parse_negotiate(&r).unwrap_err().contains("0x0202"));
        // A security buffer pointing past the end must not panic.
        bad.truncate(72);
        bad[68..72].copy_from_slice(&[0xff; 4]);
        let r = Reply {
            status: 0,
            session_id: 0,
            msg: bad,
        };
        assert_eq!(security_buffer(&r), None);
    }

    #[test]
    fn ntlm_authenticate_is_anonymous() {
        let m = ntlm_authenticate();
        assert_eq!(m.len(), 65);
        assert_eq!((u16_at(&m, 12), u32_at(&m, 16)), (Some(1), Some(64)));
        assert_eq!(u16_at(&m, 20), Some(0)); // empty NT response
        assert_ne!(u32_at(&m, 60).unwrap() & NTLM_ANONYMOUS, 0);
        assert_eq!(status_name(0xC000_0022), "STATUS_ACCESS_DENIED");
        assert_eq!(status_name(0xC000_0001), "0xc0000001");
    }

    /// Serve `reply` to one client and return its address.
    async fn fake_server(reply: impl AsRef<[u8]> + Send + 'static) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(reply.as_ref()).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        });
        addr
    }

    #[tokio::test]
    async fn garbage_servers_are_err() {
        let t = Duration::from_millis(500);
        let addr = fake_server(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        let e = probe(addr, "IPC$", t).await.unwrap_err();
        assert!(
            e.starts_with("NEGOTIATE: not an SMB direct-TCP frame"),
            "{e}"
        );
        let addr = fake_server(b"\0\0\0\x0c\xfeSMB\x40\0\0\0\0\0\0\0").await;
        let e = probe(addr, "IPC$", t).await.unwrap_err();
        assert_eq!(e, "NEGOTIATE: response shorter than its header (12 bytes)");
        let addr = fake_server(b"\0\0\0\x40\xfeSMB").await; // then silence
        let e = probe(addr, "IPC$", t).await.unwrap_err();
        assert!(e.starts_with("NEGOTIATE: no answer within"), "{e}");
        // A well-formed header, but answering SESSION_SETUP instead.
        let mut frame = vec![0, 0, 0, 64];
        frame.extend(header(SESSION_SETUP, 0, 0, 0));
        frame[20] = 1; // SERVER_TO_REDIR
        let e = probe(fake_server(frame).await, "IPC$", t)
            .await
            .unwrap_err();
        assert_eq!(e, "NEGOTIATE: reply for command 1/message 0, want 0/0");
    }

    #[tokio::test]
    async fn nothing_listening_is_err() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let start = std::time::Instant::now();
        let e = probe(addr, "IPC$", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(e.starts_with("connect"), "{e}");
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}
