//! NFSv4.0 export probe over ONC RPC/TCP (RFC 5531, RFC 7530/7531).
//!
//! A supervisor wants to know more than "port open": it walks each pseudo-fs
//! path with one COMPOUND and READDIRs it, so a squashed or unexported path
//! fails the way a client would see it. Only the handful of XDR types needed
//! are hand-coded; every length read from the wire is bounded by what is left.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const NFS_PROGRAM: u32 = 100003;
const NFS_V4: u32 = 4;
/// A sane probe reply is a few KiB; refuse anything that would make us buffer more.
const MAX_RECORD: usize = 1 << 20;
const LAST_FRAGMENT: u32 = 0x8000_0000;
const AUTH_SYS: u32 = 1;
const MACHINE_NAME: &[u8] = b"ntari-probe";
const OP_GETATTR: u32 = 9;
const OP_LOOKUP: u32 = 15;
const OP_PUTROOTFH: u32 = 24;
const OP_READDIR: u32 = 26;
const FATTR4_TYPE: u32 = 1;
const NF4DIR: u32 = 2;

/// What one probe learned about one export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportCheck {
    /// The NFSv4 pseudo-fs path probed, e.g. "/pub".
    pub pseudo: String,
    /// Ok(number of directory entries READDIR returned in its first reply), or Err(the failing op and NFS4 status name, e.g. "LOOKUP: NFS4ERR_NOENT", "READDIR: NFS4ERR_ACCESS").
    pub result: Result<u32, String>,
}

/// A NULL call, then one COMPOUND (PUTROOTFH, LOOKUP*, GETATTR, READDIR) per
/// pseudo path, on one TCP connection, all within `timeout`. Err for the whole
/// probe names the step: connect, NULL, or "COMPOUND <path>".
pub async fn probe(
    addr: SocketAddr,
    exports: &[String],
    timeout: Duration,
) -> Result<Vec<ExportCheck>, String> {
    let mut step = String::from("connect");
    match tokio::time::timeout(timeout, run(addr, exports, &mut step)).await {
        Ok(r) => r,
        Err(_) => Err(format!("{step}: timed out after {timeout:?} ({addr})")),
    }
}

async fn run(
    addr: SocketAddr,
    exports: &[String],
    step: &mut String,
) -> Result<Vec<ExportCheck>, String> {
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    // Each call is one small write followed by a wait; Nagle would only add latency.
    let _ = s.set_nodelay(true);
    // A time-derived XID so a reply cached by the server's DRC for an earlier
    // probe (same client address and port reuse) cannot be mistaken for ours.
    let mut xid = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
        .unwrap_or(1);
    *step = "NULL".into();
    call(&mut s, xid, 0, &[])
        .await
        .map_err(|e| format!("NULL: {e}"))?;
    let mut out = Vec::with_capacity(exports.len());
    for path in exports {
        xid = xid.wrapping_add(1);
        *step = format!("COMPOUND {path}");
        let (args, ops) = compound_args(path);
        let result = async {
            let rec = call(&mut s, xid, 1, &args).await?;
            let mut d = rpc_reply(&rec, xid)?;
            compound_result(&mut d, &ops)
        }
        .await
        .map_err(|e| format!("{step}: {e}"))?;
        out.push(ExportCheck {
            pseudo: path.clone(),
            result,
        });
    }
    Ok(out)
}

/// Sends one call as a single record; returns the reply record once its RPC header says accepted.
async fn call<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    xid: u32,
    procedure: u32,
    args: &[u8],
) -> Result<Vec<u8>, String> {
    let msg = rpc_call(xid, procedure, args);
    let mut rec = Vec::with_capacity(msg.len() + 4);
    rec.extend_from_slice(&(LAST_FRAGMENT | msg.len() as u32).to_be_bytes());
    rec.extend_from_slice(&msg);
    s.write_all(&rec).await.map_err(|e| format!("send: {e}"))?;
    let reply = read_record(s).await?;
    rpc_reply(&reply, xid)?;
    Ok(reply)
}

/// Reassembles one RFC 5531 §11 record from its fragments, capped at MAX_RECORD.
async fn read_record<S: AsyncRead + Unpin>(s: &mut S) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let mut h = [0u8; 4];
        s.read_exact(&mut h)
            .await
            .map_err(|e| format!("reading record mark: {e}"))?;
        let h = u32::from_be_bytes(h);
        let len = (h & !LAST_FRAGMENT) as usize;
        let start = out.len();
        if len > MAX_RECORD - start {
            return Err(format!("reply record exceeds {MAX_RECORD} bytes"));
        }
        out.resize(start + len, 0);
        s.read_exact(&mut out[start..])
            .await
            .map_err(|e| format!("reading reply fragment: {e}"))?;
        if h & LAST_FRAGMENT != 0 {
            return Ok(out);
        }
    }
}

#[derive(Default)]
struct Enc(Vec<u8>);

impl Enc {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn opaque(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
        self.0.resize(self.0.len() + (4 - b.len() % 4) % 4, 0);
    }
}

/// RPC CALL header with AUTH_SYS uid 0 gid 0 (root, so export squashing shows).
fn rpc_call(xid: u32, procedure: u32, args: &[u8]) -> Vec<u8> {
    let mut e = Enc::default();
    for v in [xid, 0, 2, NFS_PROGRAM, NFS_V4, procedure] {
        e.u32(v);
    }
    let mut cred = Enc::default();
    cred.u32(0); // stamp
    cred.opaque(MACHINE_NAME);
    for v in [0, 0, 0] {
        cred.u32(v); // uid, gid, no auxiliary gids
    }
    e.u32(AUTH_SYS);
    e.opaque(&cred.0);
    e.u32(0); // verifier AUTH_NONE, empty body
    e.u32(0);
    e.0.extend_from_slice(args);
    e.0
}

/// COMPOUND4args for `path` and the op list the reply must echo.
fn compound_args(path: &str) -> (Vec<u8>, Vec<u32>) {
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let mut e = Enc::default();
    e.opaque(b""); // tag
    e.u32(0); // minorversion
    e.u32(comps.len() as u32 + 3);
    let mut ops = vec![OP_PUTROOTFH];
    e.u32(OP_PUTROOTFH);
    for c in &comps {
        e.u32(OP_LOOKUP);
        e.opaque(c.as_bytes());
        ops.push(OP_LOOKUP);
    }
    e.u32(OP_GETATTR);
    e.u32(1);
    e.u32(1 << FATTR4_TYPE);
    e.u32(OP_READDIR);
    e.0.extend_from_slice(&[0; 16]); // cookie 0, cookieverf 0
    e.u32(1024); // dircount
    e.u32(8192); // maxcount
    e.u32(0); // attr_request: empty bitmap
    ops.extend([OP_GETATTR, OP_READDIR]);
    (e.0, ops)
}

/// Bounds-checked XDR reader: every failure is an Err, never a panic.
#[derive(Debug)]
struct Dec<'a>(&'a [u8]);

impl<'a> Dec<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.0.len() {
            return Err(format!(
                "malformed reply: need {n} bytes, {} left",
                self.0.len()
            ));
        }
        let (h, t) = self.0.split_at(n);
        self.0 = t;
        Ok(h)
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(b.iter().fold(0, |v, &x| (v << 8) | u32::from(x)))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok((u64::from(self.u32()?) << 32) | u64::from(self.u32()?))
    }
    fn bool(&mut self) -> Result<bool, String> {
        match self.u32()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(format!("malformed reply: bool {v}")),
        }
    }
    fn opaque(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        let d = self.take(n)?;
        self.take((4 - n % 4) % 4)?;
        Ok(d)
    }
    fn bitmap(&mut self) -> Result<Vec<u32>, String> {
        let n = self.u32()? as usize;
        if n > self.0.len() / 4 {
            return Err(format!("malformed reply: bitmap of {n} words"));
        }
        (0..n).map(|_| self.u32()).collect()
    }
}

/// Checks the RPC reply header; returns a reader positioned at the results.
fn rpc_reply(rec: &[u8], xid: u32) -> Result<Dec<'_>, String> {
    let mut d = Dec(rec);
    let got = d.u32()?;
    if got != xid {
        return Err(format!("reply xid {got:#x} != call xid {xid:#x}"));
    }
    match d.u32()? {
        1 => {}
        t => return Err(format!("malformed reply: msg_type {t} is not REPLY")),
    }
    match d.u32()? {
        0 => {
            d.u32()?; // verifier flavor
            d.opaque()?;
            match d.u32()? {
                0 => Ok(d),
                1 => Err("RPC PROG_UNAVAIL: server does not serve NFS".into()),
                2 => {
                    let (lo, hi) = (d.u32()?, d.u32()?);
                    Err(format!(
                        "RPC PROG_MISMATCH: server supports NFS versions {lo}..{hi}"
                    ))
                }
                3 => Err("RPC PROC_UNAVAIL".into()),
                4 => Err("RPC GARBAGE_ARGS".into()),
                5 => Err("RPC SYSTEM_ERR".into()),
                s => Err(format!("RPC accept_stat {s}")),
            }
        }
        1 => match d.u32()? {
            0 => {
                let (lo, hi) = (d.u32()?, d.u32()?);
                Err(format!(
                    "RPC_MISMATCH: server supports RPC versions {lo}..{hi}"
                ))
            }
            1 => {
                let why = match d.u32()? {
                    1 => "AUTH_BADCRED",
                    2 => "AUTH_REJECTEDCRED",
                    3 => "AUTH_BADVERF",
                    4 => "AUTH_REJECTEDVERF",
                    5 => "AUTH_TOOWEAK",
                    6 => "AUTH_INVALIDRESP",
                    7 => "AUTH_FAILED",
                    _ => "unknown auth_stat",
                };
                Err(format!("RPC AUTH_ERROR: {why}"))
            }
            s => Err(format!("RPC reject_stat {s}")),
        },
        s => Err(format!("malformed reply: reply_stat {s}")),
    }
}

/// Outer Err: malformed reply. Inner Err: the first failing op and its status.
fn compound_result(d: &mut Dec, ops: &[u32]) -> Result<Result<u32, String>, String> {
    let status = d.u32()?;
    d.opaque()?; // tag
    let n = d.u32()? as usize;
    if n > ops.len() {
        return Err(format!(
            "malformed reply: {n} results for {} ops",
            ops.len()
        ));
    }
    for &want in ops.iter().take(n) {
        let op = d.u32()?;
        if op != want {
            return Err(format!(
                "malformed reply: result for op {op}, expected {want}"
            ));
        }
        let st = d.u32()?;
        if st != 0 {
            return Ok(Err(format!("{}: {}", op_name(op), status_name(st))));
        }
        if op == OP_GETATTR {
            let mask = d.bitmap()?;
            let mut attrs = Dec(d.opaque()?);
            // We asked for TYPE only, so it is the sole (first) value.
            if mask.first().copied().unwrap_or(0) & (1 << FATTR4_TYPE) == 0 {
                return Ok(Err("GETATTR: reply lacks FATTR4_TYPE".into()));
            }
            let ty = attrs.u32()?;
            if ty != NF4DIR {
                return Ok(Err(format!("GETATTR: type {ty} is not NF4DIR")));
            }
        } else if op == OP_READDIR {
            d.take(8)?; // cookieverf
            let mut count = 0u32;
            while d.bool()? {
                d.u64()?; // cookie
                d.opaque()?; // name
                d.bitmap()?; // attrmask
                d.opaque()?; // attr values
                count = count.saturating_add(1);
            }
            d.bool()?; // eof
            return Ok(Ok(count));
        }
    }
    if status != 0 {
        return Ok(Err(format!("COMPOUND: {}", status_name(status))));
    }
    Err("malformed reply: COMPOUND ended without a READDIR result".into())
}

fn op_name(op: u32) -> &'static str {
    match op {
        OP_GETATTR => "GETATTR",
        OP_LOOKUP => "LOOKUP",
        OP_PUTROOTFH => "PUTROOTFH",
        _ => "READDIR",
    }
}

/// RFC 7530 §13 names for the statuses a probe can plausibly meet.
fn status_name(s: u32) -> String {
    let n = match s {
        1 => "PERM",
        2 => "NOENT",
        5 => "IO",
        6 => "NXIO",
        13 => "ACCESS",
        18 => "XDEV",
        20 => "NOTDIR",
        22 => "INVAL",
        63 => "NAMETOOLONG",
        70 => "STALE",
        10001 => "BADHANDLE",
        10003 => "BAD_COOKIE",
        10004 => "NOTSUPP",
        10005 => "TOOSMALL",
        10006 => "SERVERFAULT",
        10008 => "DELAY",
        10013 => "GRACE",
        10014 => "FHEXPIRED",
        10016 => "WRONGSEC",
        10018 => "RESOURCE",
        10019 => "MOVED",
        10020 => "NOFILEHANDLE",
        10021 => "MINOR_VERS_MISMATCH",
        10036 => "BADXDR",
        10040 => "BADCHAR",
        10041 => "BADNAME",
        10044 => "OP_ILLEGAL",
        _ => return format!("NFS4ERR_UNKNOWN({s})"),
    };
    format!("NFS4ERR_{n}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Captured from NFS-Ganesha 4.3 (FSAL VFS): COMPOUND for "/pub" holding a.txt, b.txt, sub/.
    const PUB_REPLY: &str = "6b786bfa000000010000000000000000000000000000000000000000000000000000000400000018000000000000000f000000000000000900000000000000010000000200000004000000020000001a0000000000000000000000000000000154ccde4fc20861a400000005622e747874000000000000000000000000000001583a64d73040ba1e00000003737562000000000000000000000000017fffffffffffffff00000005612e74787400000000000000000000000000000000000001";
    /// Same server, "/deep/secret" (0700, uid 12345) with root squashed.
    const SECRET_REPLY: &str = "6bfbe38100000001000000000000000000000000000000000000000d000000000000000500000018000000000000000f000000000000000f000000000000000900000000000000010000000200000004000000020000001a0000000d";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }

    fn parse(rec: &[u8], path: &str) -> Result<Result<u32, String>, String> {
        let xid = u32::from_be_bytes(rec.get(..4).ok_or("short")?.try_into().unwrap());
        compound_result(&mut rpc_reply(rec, xid)?, &compound_args(path).1)
    }

    #[test]
    fn encodes_compound_and_call_header() {
        let (args, ops) = compound_args("/deep/secret");
        assert_eq!(ops, [24, 15, 15, 9, 26]);
        let want = "00000000 00000000 00000005 00000018 0000000f 00000004 64656570 \
                    0000000f 00000006 73656372 65740000 00000009 00000001 00000002 \
                    0000001a 00000000 00000000 00000000 00000000 00000400 00002000 00000000";
        assert_eq!(args, hex(&want.replace([' ', '\\', '\n'], "")));
        let call = rpc_call(7, 1, &[]);
        let want = "00000007 00000000 00000002 000186a3 00000004 00000001 00000001 00000020 \
                    00000000 0000000b 6e746172 692d7072 6f626500 00000000 00000000 00000000 \
                    00000000 00000000";
        assert_eq!(call, hex(&want.replace([' ', '\\', '\n'], "")));
    }

    #[test]
    fn parses_captured_replies() {
        assert_eq!(parse(&hex(PUB_REPLY), "/pub"), Ok(Ok(3)));
        let secret = parse(&hex(SECRET_REPLY), "/deep/secret");
        assert_eq!(secret, Ok(Err("READDIR: NFS4ERR_ACCESS".into())));
    }

    #[test]
    fn truncated_or_garbage_replies_are_errors() {
        let full = hex(PUB_REPLY);
        for n in 0..full.len() {
            assert!(parse(&full[..n], "/pub").is_err(), "prefix {n}");
        }
        let mut bad = full.clone();
        bad[28..32].copy_from_slice(&[0xff; 4]); // tag length
        assert!(parse(&bad, "/pub").unwrap_err().contains("malformed"));
        let mut bad = full.clone();
        bad[184..188].copy_from_slice(&[0, 0, 0, 7]); // value_follows not a bool
        assert!(parse(&bad, "/pub").is_err());
        assert!(parse(&full, "/a/b/c").is_err()); // results do not match ops
        assert!(rpc_reply(&full, 1).unwrap_err().contains("xid"));
        assert!(rpc_reply(&[0xab; 64], 0xabab_abab).is_err());
    }

    #[tokio::test]
    async fn reassembles_fragments_and_caps_size() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&[0, 0, 0, 2, 1, 2, 0x80, 0, 0, 1, 3])
            .await
            .unwrap();
        assert_eq!(read_record(&mut b).await.unwrap(), [1, 2, 3]);
        a.write_all(&0x7fff_ffffu32.to_be_bytes()).await.unwrap();
        assert!(read_record(&mut b).await.unwrap_err().contains("exceeds"));
    }

    /// Serves one connection; `reply(call_index, xid)` gives the raw bytes to send.
    async fn fake(reply: fn(usize, [u8; 4]) -> Vec<u8>) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            for i in 0.. {
                let Ok(req) = read_record(&mut s).await else {
                    return;
                };
                let out = reply(i, req[..4].try_into().unwrap());
                if out.is_empty() {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                }
                let _ = s.write_all(&out).await;
            }
        });
        addr
    }

    fn record(xid: [u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = (0x8000_0004 + body.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(&xid);
        v.extend_from_slice(body);
        v
    }

    const T: Duration = Duration::from_secs(2);

    async fn run_fake(reply: fn(usize, [u8; 4]) -> Vec<u8>) -> Result<Vec<ExportCheck>, String> {
        probe(fake(reply).await, &["/pub".to_string()], T).await
    }

    #[tokio::test]
    async fn fake_server_full_probe() {
        let r = run_fake(|i, x| match i {
            0 => record(x, &hex("000000010000000000000000000000000000000000000000")),
            _ => record(x, &hex(PUB_REPLY)[4..]),
        });
        let want = ExportCheck {
            pseudo: "/pub".into(),
            result: Ok(3),
        };
        assert_eq!(r.await, Ok(vec![want]));
    }

    #[tokio::test]
    async fn fake_server_errors_name_the_step() {
        let e = run_fake(|_, _| b"\x80\x00\x00\x08garbage!".to_vec()).await;
        assert!(e.unwrap_err().starts_with("NULL: reply xid"));
        const MISMATCH: &str = "00000001 00000000 00000000 00000000 00000002 00000002 00000003";
        let e = run_fake(|_, x| record(x, &hex(&MISMATCH.replace(' ', "")))).await;
        let want = "NULL: RPC PROG_MISMATCH: server supports NFS versions 2..3";
        assert_eq!(e.unwrap_err(), want);
        const DENIED: &str = "00000001 00000001 00000001 00000005";
        let e = run_fake(|_, x| record(x, &hex(&DENIED.replace(' ', "")))).await;
        assert_eq!(e.unwrap_err(), "NULL: RPC AUTH_ERROR: AUTH_TOOWEAK");
        let e = run_fake(|i, x| match i {
            0 => record(x, &hex("000000010000000000000000000000000000000000000000")),
            _ => record(x, &hex(PUB_REPLY)[4..100]),
        });
        assert!(e
            .await
            .unwrap_err()
            .starts_with("COMPOUND /pub: malformed reply"));
        let silent = fake(|_, _| Vec::new()).await;
        let e = probe(silent, &[], Duration::from_millis(200)).await;
        assert!(e.unwrap_err().starts_with("NULL: timed out"));
    }

    #[tokio::test]
    async fn refused_connection_fails_fast() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let e = probe(addr, &[], T).await.unwrap_err();
        assert!(e.starts_with("connect "), "{e}");
    }
}
