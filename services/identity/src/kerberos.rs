//! The KDC probe: a real Kerberos 5 AS exchange, done in-process.
//!
//! Why not spawn `kinit`: the health probe runs every few seconds, and each
//! kinit costs a process, a credential cache to clean up and ~10 ms. Here it
//! is two TCP round trips to the KDC and a few AES blocks.
//!
//! What a success proves: the KDC answers; it finds the principal in LDAP
//! (else `KDC_ERR_C_PRINCIPAL_UNKNOWN`); it demands pre-authentication (a
//! ticket for an AS-REQ without padata is an error here, not a pass); and the
//! key in the keytab is the principal's current key (the KDC accepted our
//! encrypted timestamp and we could decrypt its reply with the same key).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use picky_asn1::bit_string::BitString;
use picky_asn1::date::Date;
use picky_asn1::restricted_string::Ia5String;
use picky_asn1::wrapper::{Asn1SequenceOf, BitStringAsn1, IntegerAsn1, OctetStringAsn1};
use picky_krb::crypto::{CipherSuite, KerberosCryptoError};
use picky_krb::data_types::{
    EncryptedData, EtypeInfo2, KerberosStringAsn1, KerberosTime, PaData, PaEncTsEnc, PrincipalName,
};
use picky_krb::messages::{
    AsRep, AsReq, EncAsRepPart, EncTgsRepPart, KdcReq, KdcReqBody, KrbError,
};
use rand_core::{OsRng, RngCore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Replies larger than this are refused before anything is allocated.
const MAX_REPLY: usize = 64 * 1024;
/// The AES enctypes picky-krb implements, strongest first (RFC 3962).
const AES_ENCTYPES: [i32; 2] = [18, 17];

#[derive(Debug, thiserror::Error)]
pub enum KerberosError {
    #[error("cannot read keytab {}: {source}", path.display())]
    KeytabIo {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("keytab {}: {reason} at byte {offset}", path.display())]
    Keytab {
        path: PathBuf,
        offset: usize,
        reason: String,
    },
    #[error("no usable key: {0}")]
    NoUsableKey(String),
    #[error("cannot reach KDC {kdc}: {source}")]
    Io {
        kdc: SocketAddr,
        source: std::io::Error,
    },
    #[error("no answer from KDC {kdc} within {timeout:?}")]
    Timeout { kdc: SocketAddr, timeout: Duration },
    #[error("KDC {kdc} sent a reply of {len} bytes, over the {MAX_REPLY}-byte limit")]
    ReplyTooLarge { kdc: SocketAddr, len: usize },
    #[error("KDC {kdc} sent a malformed {what}: {detail}")]
    Malformed {
        kdc: SocketAddr,
        what: &'static str,
        detail: String,
    },
    #[error("KDC {kdc} answered KRB-ERROR {code} {name}{}", paren(e_text))]
    Kdc {
        kdc: SocketAddr,
        code: u32,
        name: &'static str,
        e_text: Option<String>,
    },
    #[error(
        "KDC {kdc} issued a ticket for {principal} without pre-authentication \
             (the principal lacks requires_preauth)"
    )]
    PreauthNotRequired { kdc: SocketAddr, principal: String },
    #[error("KDC {kdc} reply does not match the request: {detail}")]
    Mismatch { kdc: SocketAddr, detail: String },
    #[error("cannot build the AS-REQ: {0}")]
    Request(String),
    #[error("Kerberos crypto failed ({what}): {detail}")]
    Crypto { what: &'static str, detail: String },
}

fn paren(text: &Option<String>) -> String {
    text.as_ref().map(|t| format!(" ({t})")).unwrap_or_default()
}

/// One keytab entry. `principal` includes the realm ("ntari-probe@COOP.LAN").
#[derive(Clone)]
pub struct KeytabEntry {
    pub principal: String,
    pub realm: String,
    pub kvno: u32,
    pub enctype: i32,
    pub key: Vec<u8>,
}

impl Drop for KeytabEntry {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

impl std::fmt::Debug for KeytabEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            principal,
            kvno,
            enctype,
            ..
        } = self;
        write!(
            f,
            "KeytabEntry({principal} kvno {kvno} enctype {enctype}, key redacted)"
        )
    }
}

/// Result of a successful probe.
#[derive(Debug, Clone)]
pub struct AsOutcome {
    /// Enctype of the AS-REP's enc-part (the key the KDC chose).
    pub enctype: i32,
    /// The first AS-REQ (no padata) got KDC_ERR_PREAUTH_REQUIRED; always true on Ok.
    pub preauth_required: bool,
    /// Both round trips together.
    pub round_trip: Duration,
}

/// Reads an MIT keytab (format 0x0502, big-endian; 0x0501, host byte order).
pub fn read_keytab(path: &Path) -> Result<Vec<KeytabEntry>, KerberosError> {
    let path_buf = || path.to_path_buf();
    let data = std::fs::read(path).map_err(|source| KerberosError::KeytabIo {
        path: path_buf(),
        source,
    })?;
    parse_keytab(&data).map_err(|(offset, reason)| KerberosError::Keytab {
        path: path_buf(),
        offset,
        reason,
    })
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    end: usize,
    big_endian: bool,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], (usize, String)> {
        match self.data.get(self.pos..self.pos.saturating_add(n)) {
            Some(b) if self.pos + n <= self.end => {
                self.pos += n;
                Ok(b)
            }
            _ => Err((self.pos, format!("truncated entry ({what})"))),
        }
    }
    /// An n-byte unsigned integer in the keytab's byte order.
    fn uint(&mut self, n: usize, what: &str) -> Result<u32, (usize, String)> {
        let b = self.take(n, what)?;
        let fold = |acc: u32, &x: &u8| acc << 8 | u32::from(x);
        Ok(match self.big_endian {
            true => b.iter().fold(0, fold),
            false => b.iter().rev().fold(0, fold),
        })
    }
    fn string(&mut self, what: &str) -> Result<String, (usize, String)> {
        let start = self.pos;
        let len = self.uint(2, what)? as usize;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| (start, format!("{what} is not UTF-8")))
    }
}

fn parse_keytab(data: &[u8]) -> Result<Vec<KeytabEntry>, (usize, String)> {
    let big_endian = match data.get(..2) {
        Some([5, 2]) => true,
        Some([5, 1]) => cfg!(target_endian = "big"), // v1 is in host byte order
        Some(v) => {
            return Err((
                0,
                format!("unknown keytab version {:02x}{:02x}", v[0], v[1]),
            ))
        }
        None => return Err((0, "file too short for a keytab header".into())),
    };
    let (pos, end) = (2, data.len());
    let mut c = Cursor {
        data,
        pos,
        end,
        big_endian,
    };
    let mut entries = Vec::new();
    while c.pos < data.len() {
        let size = c.uint(4, "entry size")? as i32;
        if size == 0 {
            break; // MIT treats a zero size as the end of the keytab
        }
        let start = c.pos;
        if size < 0 {
            // A hole left by a deleted entry: skip it.
            c.take(size.unsigned_abs() as usize, "deleted entry")?;
            continue;
        }
        let left = data.len() - start;
        if size as usize > left {
            let reason = format!("truncated entry ({size} bytes announced, {left} left)");
            return Err((start - 4, reason));
        }
        c.end = start + size as usize;
        let mut ncomp = c.uint(2, "component count")? as usize;
        if data[1] == 1 {
            ncomp = ncomp.saturating_sub(1); // v1 counts the realm as a component
        }
        let realm = c.string("realm")?;
        let comps = (0..ncomp)
            .map(|_| c.string("name component"))
            .collect::<Result<Vec<_>, _>>()?;
        if data[1] == 2 {
            c.uint(4, "name type")?;
        }
        c.uint(4, "timestamp")?;
        let kvno8 = c.take(1, "kvno")?[0];
        let enctype = c.uint(2, "enctype")? as i16 as i32;
        let key_len = c.uint(2, "key length")? as usize;
        let key = c.take(key_len, "key")?.to_vec();
        // A 32-bit kvno follows when the entry has room for it; it wins over the 8-bit one.
        let kvno = match c.end - c.pos >= 4 {
            true => Some(c.uint(4, "kvno")?).filter(|&v| v != 0),
            false => None,
        };
        let kvno = kvno.unwrap_or(u32::from(kvno8));
        entries.push(KeytabEntry {
            principal: format!("{}@{realm}", comps.join("/")),
            realm,
            kvno,
            enctype,
            key,
        });
        c.pos = c.end;
        c.end = data.len();
    }
    Ok(entries)
}

/// RFC 4120 §7.5.9 (and RFC 4556/6113 for 62..76) error names.
fn error_name(code: u32) -> &'static str {
    #[rustfmt::skip]
    const NAMES: [&str; 77] = [
        "KDC_ERR_NONE", "KDC_ERR_NAME_EXP", "KDC_ERR_SERVICE_EXP", "KDC_ERR_BAD_PVNO",
        "KDC_ERR_C_OLD_MAST_KVNO", "KDC_ERR_S_OLD_MAST_KVNO", "KDC_ERR_C_PRINCIPAL_UNKNOWN",
        "KDC_ERR_S_PRINCIPAL_UNKNOWN", "KDC_ERR_PRINCIPAL_NOT_UNIQUE", "KDC_ERR_NULL_KEY",
        "KDC_ERR_CANNOT_POSTDATE", "KDC_ERR_NEVER_VALID", "KDC_ERR_POLICY", "KDC_ERR_BADOPTION",
        "KDC_ERR_ETYPE_NOSUPP", "KDC_ERR_SUMTYPE_NOSUPP", "KDC_ERR_PADATA_TYPE_NOSUPP",
        "KDC_ERR_TRTYPE_NOSUPP", "KDC_ERR_CLIENT_REVOKED", "KDC_ERR_SERVICE_REVOKED",
        "KDC_ERR_TGT_REVOKED", "KDC_ERR_CLIENT_NOTYET", "KDC_ERR_SERVICE_NOTYET",
        "KDC_ERR_KEY_EXPIRED", "KDC_ERR_PREAUTH_FAILED", "KDC_ERR_PREAUTH_REQUIRED",
        "KDC_ERR_SERVER_NOMATCH", "KDC_ERR_MUST_USE_USER2USER", "KDC_ERR_PATH_NOT_ACCEPTED",
        "KDC_ERR_SVC_UNAVAILABLE", "", "KRB_AP_ERR_BAD_INTEGRITY", "KRB_AP_ERR_TKT_EXPIRED",
        "KRB_AP_ERR_TKT_NYV", "KRB_AP_ERR_REPEAT", "KRB_AP_ERR_NOT_US", "KRB_AP_ERR_BADMATCH",
        "KRB_AP_ERR_SKEW", "KRB_AP_ERR_BADADDR", "KRB_AP_ERR_BADVERSION", "KRB_AP_ERR_MSG_TYPE",
        "KRB_AP_ERR_MODIFIED", "KRB_AP_ERR_BADORDER", "", "KRB_AP_ERR_BADKEYVER",
        "KRB_AP_ERR_NOKEY", "KRB_AP_ERR_MUT_FAIL", "KRB_AP_ERR_BADDIRECTION", "KRB_AP_ERR_METHOD",
        "KRB_AP_ERR_BADSEQ", "KRB_AP_ERR_INAPP_CKSUM", "KRB_AP_PATH_NOT_ACCEPTED",
        "KRB_ERR_RESPONSE_TOO_BIG", "", "", "", "", "", "", "", "KRB_ERR_GENERIC",
        "KRB_ERR_FIELD_TOOLONG", "KDC_ERR_CLIENT_NOT_TRUSTED", "KDC_ERR_KDC_NOT_TRUSTED",
        "KDC_ERR_INVALID_SIG", "KDC_ERR_KEY_TOO_WEAK", "KDC_ERR_CERTIFICATE_MISMATCH",
        "KRB_AP_ERR_NO_TGT", "KDC_ERR_WRONG_REALM", "KRB_AP_ERR_USER_TO_USER_REQUIRED",
        "KDC_ERR_CANT_VERIFY_CERTIFICATE", "KDC_ERR_INVALID_CERTIFICATE",
        "KDC_ERR_REVOKED_CERTIFICATE", "KDC_ERR_REVOCATION_STATUS_UNKNOWN",
        "KDC_ERR_REVOCATION_STATUS_UNAVAILABLE", "KDC_ERR_CLIENT_NAME_MISMATCH",
        "KDC_ERR_KDC_NAME_MISMATCH",
    ];
    match NAMES.get(code as usize) {
        Some(name) if !name.is_empty() => name,
        _ => "(unknown error code)",
    }
}

/// A decoded KDC answer.
enum Reply {
    Error(Box<KrbError>),
    As(Box<AsRep>),
}

fn decode_reply(kdc: SocketAddr, raw: &[u8]) -> Result<Reply, KerberosError> {
    let bad = |what, detail: String| KerberosError::Malformed { kdc, what, detail };
    // picky-asn1-der reads a truncated trailing OPTIONAL field as absent, so
    // check that the outer TLV covers exactly the bytes received.
    let header = match raw.get(1) {
        Some(&l) if l < 0x80 => Some((2, usize::from(l))),
        Some(&l) if (0x81..=0x84).contains(&l) => raw.get(2..2 + usize::from(l & 0x7f)).map(|b| {
            let len = b.iter().fold(0, |acc, &x| acc << 8 | usize::from(x));
            (2 + b.len(), len)
        }),
        _ => None,
    };
    if !matches!(header, Some((h, len)) if h + len == raw.len()) {
        return Err(bad(
            "reply",
            format!("outer length does not match the {} bytes", raw.len()),
        ));
    }
    match raw.first() {
        Some(0x7e) => picky_asn1_der::from_bytes(raw)
            .map(|e| Reply::Error(Box::new(e)))
            .map_err(|e| bad("KRB-ERROR", e.to_string())),
        Some(0x6b) => picky_asn1_der::from_bytes(raw)
            .map(|r| Reply::As(Box::new(r)))
            .map_err(|e| bad("AS-REP", e.to_string())),
        Some(t) => Err(bad("reply", format!("unexpected tag {t:#04x}"))),
        None => Err(bad("reply", "empty".into())),
    }
}

fn kdc_error(kdc: SocketAddr, err: &KrbError) -> KerberosError {
    let code = err.0.error_code.0;
    let e_text = err.0.e_text.0.as_ref().map(|t| t.0.to_string());
    let e_text = e_text.filter(|t| !t.is_empty());
    let name = error_name(code);
    KerberosError::Kdc {
        kdc,
        code,
        name,
        e_text,
    }
}

/// The etypes ETYPE-INFO2 in a PREAUTH_REQUIRED error's METHOD-DATA, in the KDC's order.
fn etype_info2(err: &KrbError) -> Vec<i32> {
    let Some(e_data) = err.0.e_data.0.as_ref() else {
        return Vec::new();
    };
    let Ok(methods) = picky_asn1_der::from_bytes::<Asn1SequenceOf<PaData>>(&e_data.0 .0) else {
        return Vec::new();
    };
    methods
        .0
        .iter()
        .filter(|pa| int_value(&pa.padata_type.0) == Some(19))
        .filter_map(|pa| picky_asn1_der::from_bytes::<EtypeInfo2>(&pa.padata_data.0 .0).ok())
        .flat_map(|info| {
            info.0
                .into_iter()
                .filter_map(|e| int_value(&e.etype.0).map(|v| v as i32))
        })
        .collect()
}

fn int_value(i: &IntegerAsn1) -> Option<i64> {
    let b = i.as_signed_bytes_be();
    if b.len() > 8 {
        return None;
    }
    let negative = b.first().is_some_and(|&x| x & 0x80 != 0);
    let mut buf = [if negative { 0xff } else { 0 }; 8];
    buf[8 - b.len()..].copy_from_slice(b);
    Some(i64::from_be_bytes(buf))
}

fn int(v: i64) -> IntegerAsn1 {
    IntegerAsn1::from_bytes_be_signed(v.to_be_bytes().to_vec())
}

fn kstr(s: &str) -> Result<KerberosStringAsn1, KerberosError> {
    Ia5String::from_string(s.to_owned())
        .map(KerberosStringAsn1::from)
        .map_err(|_| KerberosError::Request(format!("{s:?} is not ASCII")))
}

fn kerberos_time(t: SystemTime) -> Option<KerberosTime> {
    // Days since the epoch to a civil date (H. Hinnant's algorithm): no time crate needed.
    let secs = t.duration_since(UNIX_EPOCH).ok()?.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as u16;
    let (hour, min, sec) = ((rem / 3600) as u8, (rem / 60 % 60) as u8, (rem % 60) as u8);
    Date::new(year, month, day, hour, min, sec).map(KerberosTime::from)
}

/// One request, one reply, over a fresh TCP connection (RFC 4120 §7.2.2 framing).
async fn round_trip(kdc: SocketAddr, msg: &[u8]) -> Result<Vec<u8>, KerberosError> {
    let io = |source| KerberosError::Io { kdc, source };
    let mut stream = TcpStream::connect(kdc).await.map_err(io)?;
    let mut framed = (msg.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(msg);
    stream.write_all(&framed).await.map_err(io)?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.map_err(io)?;
    // The top bit is reserved for extensions we do not speak; it also makes the length absurd.
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_REPLY {
        return Err(KerberosError::ReplyTooLarge { kdc, len });
    }
    let mut reply = vec![0u8; len];
    stream.read_exact(&mut reply).await.map_err(io)?;
    Ok(reply)
}

/// AS exchange for the principal of `keys` (entries of one principal, e.g. its
/// whole keytab; other principals' entries are ignored): first without padata,
/// which must fail with PREAUTH_REQUIRED, then with PA-ENC-TIMESTAMP. `timeout`
/// bounds the whole exchange.
pub async fn as_exchange(
    kdc: SocketAddr,
    keys: &[KeytabEntry],
    timeout: Duration,
) -> Result<AsOutcome, KerberosError> {
    let exchange = exchange(kdc, keys);
    let timed_out = |_| KerberosError::Timeout { kdc, timeout };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(timed_out)?
}

fn encoding(e: picky_asn1_der::Asn1DerError) -> KerberosError {
    KerberosError::Request(format!("DER encoding: {e}"))
}

fn crypto(what: &'static str) -> impl Fn(KerberosCryptoError) -> KerberosError {
    move |e| KerberosError::Crypto {
        what,
        detail: e.to_string(),
    }
}

fn now_kerberos(offset: Duration) -> Result<(KerberosTime, u32), KerberosError> {
    let now = SystemTime::now() + offset;
    let micros = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_micros())
        .unwrap_or(0);
    Ok((
        kerberos_time(now).ok_or_else(|| KerberosError::Request("clock out of range".into()))?,
        micros,
    ))
}

fn as_req(
    cname: &PrincipalName,
    realm: &str,
    etypes: &[i32],
    nonce: u32,
    padata: Option<PaData>,
) -> Result<Vec<u8>, KerberosError> {
    let sname = PrincipalName {
        name_type: int(2).into(), // NT-SRV-INST
        name_string: Asn1SequenceOf::from(vec![kstr("krbtgt")?, kstr(realm)?]).into(),
    };
    let etypes: Vec<IntegerAsn1> = etypes.iter().map(|&t| int(t.into())).collect();
    let req = AsReq::from(KdcReq {
        pvno: int(5).into(),
        msg_type: int(10).into(),
        padata: padata.map(|p| Asn1SequenceOf::from(vec![p]).into()).into(),
        req_body: KdcReqBody {
            kdc_options: BitStringAsn1::from(BitString::with_bytes(vec![0; 4])).into(),
            cname: Some(cname.clone().into()).into(),
            realm: kstr(realm)?.into(),
            sname: Some(sname.into()).into(),
            from: None.into(),
            // The probe never uses the ticket: ask for a short one.
            till: now_kerberos(Duration::from_secs(600))?.0.into(),
            rtime: None.into(),
            nonce: int(nonce.into()).into(),
            etype: Asn1SequenceOf::from(etypes).into(),
            addresses: None.into(),
            enc_authorization_data: None.into(),
            additional_tickets: None.into(),
        }
        .into(),
    });
    picky_asn1_der::to_vec(&req).map_err(encoding)
}

async fn exchange(kdc: SocketAddr, keys: &[KeytabEntry]) -> Result<AsOutcome, KerberosError> {
    let started = Instant::now();
    let aes = |e: &&KeytabEntry| AES_ENCTYPES.contains(&e.enctype);
    let Some(first) = keys.iter().find(aes) else {
        let found: Vec<String> = keys.iter().map(|e| e.enctype.to_string()).collect();
        let found = found.join(", ");
        return Err(KerberosError::NoUsableKey(format!(
            "no AES key (17, 18) among enctypes [{found}]"
        )));
    };
    // That principal's keys at its newest kvno, strongest first.
    let mine = || {
        keys.iter()
            .filter(aes)
            .filter(|e| e.principal == first.principal)
    };
    let kvno = mine().map(|e| e.kvno).max().unwrap_or(first.kvno);
    let mut usable: Vec<&KeytabEntry> = mine().filter(|e| e.kvno == kvno).collect();
    usable.sort_by_key(|e| AES_ENCTYPES.iter().position(|&t| t == e.enctype));
    let etypes: Vec<i32> = usable.iter().map(|e| e.enctype).collect();
    let (principal, realm) = (first.principal.clone(), first.realm.as_str());
    let name = principal
        .rsplit_once('@')
        .map_or(principal.as_str(), |(n, _)| n);
    let components = name.split('/').map(kstr).collect::<Result<Vec<_>, _>>()?;
    let cname = PrincipalName {
        name_type: int(1).into(), // NT-PRINCIPAL
        name_string: Asn1SequenceOf::from(components).into(),
    };
    // Nonces stay below 2^31: some KDCs treat them as signed.
    let nonce = || OsRng.next_u32() & 0x7fff_ffff;

    // 1) No padata: a KDC that demands pre-auth must refuse.
    let req = as_req(&cname, realm, &etypes, nonce(), None)?;
    let wanted = match decode_reply(kdc, &round_trip(kdc, &req).await?)? {
        Reply::As(_) => return Err(KerberosError::PreauthNotRequired { kdc, principal }),
        Reply::Error(e) if e.0.error_code.0 == 25 => etype_info2(&e),
        Reply::Error(e) => return Err(kdc_error(kdc, &e)),
    };

    // 2) PA-ENC-TIMESTAMP (key usage 1), in the enctype the KDC names first
    // in ETYPE-INFO2 as kinit does, with a fresh nonce.
    let key = wanted
        .iter()
        .find_map(|t| usable.iter().find(|e| e.enctype == *t))
        .or(usable.first())
        .ok_or_else(|| KerberosError::NoUsableKey(format!("no current key for {principal}")))?;
    let (patimestamp, usec) = now_kerberos(Duration::ZERO)?;
    let ts = PaEncTsEnc {
        patimestamp: patimestamp.into(),
        pausec: Some(int(usec.into()).into()).into(),
    };
    let ts = picky_asn1_der::to_vec(&ts).map_err(encoding)?;
    // The cipher is not `Send`: used and dropped before the next await.
    let ts = CipherSuite::try_from(key.enctype as usize)
        .map_err(crypto("enctype"))?
        .cipher()
        .encrypt(&key.key, 1, &ts)
        .map_err(crypto("encrypting the timestamp"))?;
    let enc_ts = EncryptedData {
        etype: int(key.enctype.into()).into(),
        kvno: None.into(),
        cipher: OctetStringAsn1::from(ts).into(),
    };
    let padata = PaData {
        padata_type: int(2).into(), // PA-ENC-TIMESTAMP
        padata_data: OctetStringAsn1::from(picky_asn1_der::to_vec(&enc_ts).map_err(encoding)?)
            .into(),
    };
    let nonce = nonce();
    let req = as_req(&cname, realm, &etypes, nonce, Some(padata))?;
    let rep = match decode_reply(kdc, &round_trip(kdc, &req).await?)? {
        Reply::As(rep) => rep,
        Reply::Error(e) => return Err(kdc_error(kdc, &e)),
    };
    let mismatch = |detail: String| KerberosError::Mismatch { kdc, detail };
    let crealm = rep.0.crealm.0.to_string();
    if crealm != realm {
        return Err(mismatch(format!(
            "AS-REP for realm {crealm}, asked for {realm}"
        )));
    }

    // Decrypting the enc-part (key usage 3) proves the KDC holds our key.
    let enc = &rep.0.enc_part.0;
    let etype = int_value(&enc.etype.0).unwrap_or(-1) as i32;
    let Some(key) = usable.iter().find(|e| e.enctype == etype) else {
        return Err(mismatch(format!(
            "enc-part in enctype {etype}, which was not offered"
        )));
    };
    let cipher = CipherSuite::try_from(etype as usize).map_err(crypto("enc-part enctype"))?;
    let plain = cipher
        .cipher()
        .decrypt(&key.key, 3, &enc.cipher.0 .0)
        .map_err(|e| {
            let kvno = key.kvno;
            mismatch(format!(
                "enc-part does not decrypt with the kvno {kvno} key: {e}"
            ))
        })?;
    // RFC 4120 §5.4.2: some KDCs send an EncTGSRepPart here; accept either tag.
    let part = match picky_asn1_der::from_bytes::<EncAsRepPart>(&plain) {
        Ok(p) => p.0,
        Err(_) => {
            picky_asn1_der::from_bytes::<EncTgsRepPart>(&plain)
                .map_err(|e| KerberosError::Malformed {
                    kdc,
                    what: "EncASRepPart",
                    detail: e.to_string(),
                })?
                .0
        }
    };
    let got = int_value(&part.nonce.0);
    if got != Some(nonce.into()) {
        return Err(mismatch(format!(
            "nonce {got:?} in the enc-part, {nonce} sent"
        )));
    }
    let srealm = part.srealm.0.to_string();
    if srealm != realm {
        return Err(mismatch(format!(
            "ticket for realm {srealm}, asked for {realm}"
        )));
    }
    let round_trip = started.elapsed();
    Ok(AsOutcome {
        enctype: etype,
        preauth_required: true,
        round_trip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One v2 entry in realm COOP.LAN, as MIT's ktutil writes it.
    fn entry(comps: &[&str], kvno8: u8, enctype: u16, key: &[u8], kvno32: Option<u32>) -> Vec<u8> {
        let mut e = (comps.len() as u16).to_be_bytes().to_vec();
        for s in std::iter::once(&"COOP.LAN").chain(comps) {
            e.extend((s.len() as u16).to_be_bytes());
            e.extend(s.as_bytes());
        }
        e.extend(1u32.to_be_bytes()); // name type
        e.extend(0x6b0f_422cu32.to_be_bytes()); // timestamp
        e.push(kvno8);
        e.extend(enctype.to_be_bytes());
        e.extend((key.len() as u16).to_be_bytes());
        e.extend(key);
        if let Some(v) = kvno32 {
            e.extend(v.to_be_bytes());
        }
        let mut out = (e.len() as u32).to_be_bytes().to_vec();
        out.extend(e);
        out
    }

    fn keytab() -> Vec<u8> {
        let mut kt = vec![5, 2];
        kt.extend(entry(&["ntari-probe"], 2, 18, &[7; 32], Some(2)));
        kt.extend((-6i32).to_be_bytes()); // hole from a deleted entry
        kt.extend([0; 6]);
        kt.extend(entry(&["host", "hub.coop.lan"], 3, 17, &[9; 16], Some(300)));
        kt.extend(entry(&["old"], 4, 17, &[1; 16], None));
        kt
    }

    #[test]
    fn parses_keytab() {
        let e = parse_keytab(&keytab()).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(
            (
                e[0].principal.as_str(),
                e[0].realm.as_str(),
                e[0].kvno,
                e[0].enctype
            ),
            ("ntari-probe@COOP.LAN", "COOP.LAN", 2, 18)
        );
        assert_eq!(e[0].key, vec![7; 32]);
        assert_eq!(
            (e[1].principal.as_str(), e[1].kvno),
            ("host/hub.coop.lan@COOP.LAN", 300)
        );
        assert_eq!(e[2].kvno, 4); // no 32-bit kvno: the 8-bit one
        assert!(!format!("{:?}", e[0]).contains('7'));
    }

    #[test]
    fn parses_v1_keytab_in_host_order() {
        // v1: host byte order, the realm counted as a component, no name type.
        let mut e = 2u16.to_ne_bytes().to_vec();
        for s in ["R", "p"] {
            e.extend((s.len() as u16).to_ne_bytes());
            e.extend(s.as_bytes());
        }
        e.extend(0u32.to_ne_bytes());
        e.push(5);
        e.extend(17u16.to_ne_bytes());
        e.extend(16u16.to_ne_bytes());
        e.extend([3; 16]);
        let mut kt = vec![5, 1];
        kt.extend((e.len() as u32).to_ne_bytes());
        kt.extend(e);
        let e = parse_keytab(&kt).unwrap();
        assert_eq!(
            (e[0].principal.as_str(), e[0].kvno, e[0].enctype),
            ("p@R", 5, 17)
        );
    }

    #[test]
    fn truncated_or_garbled_keytab_is_an_error_with_offset() {
        let kt = keytab();
        for cut in 0..kt.len() {
            if let Ok(entries) = parse_keytab(&kt[..cut]) {
                // Only a cut exactly between entries may parse.
                assert!(entries.len() < 3, "cut at {cut}");
            }
        }
        let (off, why) = parse_keytab(&kt[..40]).err().unwrap();
        assert!(off <= 40 && why.contains("truncated"), "{off} {why}");
        assert_eq!(parse_keytab(&[5, 9, 0, 0]).err().unwrap().0, 0);
        let mut bad = keytab();
        bad[2..6].copy_from_slice(&0x7fff_0000u32.to_be_bytes()); // size past the end
        let (off, why) = parse_keytab(&bad).err().unwrap();
        assert_eq!(
            (off, why.starts_with("truncated entry (2147418112 bytes")),
            (2, true)
        );
        let err = read_keytab(Path::new("/nonexistent/x.keytab"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("/nonexistent/x.keytab"));
    }

    const ADDR: &str = "127.0.0.1:88";

    #[test]
    fn decodes_krb_error_with_name_and_text() {
        // picky-krb's own test vector: KDC_ERR_C_PRINCIPAL_UNKNOWN, e-text CLIENT_NOT_FOUND.
        let raw: Vec<u8> = vec![
            126, 129, 151, 48, 129, 148, 160, 3, 2, 1, 5, 161, 3, 2, 1, 30, 164, 17, 24, 15, 50,
            48, 50, 49, 49, 50, 50, 56, 49, 51, 52, 48, 49, 49, 90, 165, 5, 2, 3, 12, 139, 242,
            166, 3, 2, 1, 6, 167, 13, 27, 11, 69, 88, 65, 77, 80, 76, 69, 46, 67, 79, 77, 168, 21,
            48, 19, 160, 3, 2, 1, 1, 161, 12, 48, 10, 27, 8, 98, 97, 100, 95, 117, 115, 101, 114,
            169, 13, 27, 11, 69, 88, 65, 77, 80, 76, 69, 46, 67, 79, 77, 170, 32, 48, 30, 160, 3,
            2, 1, 2, 161, 23, 48, 21, 27, 6, 107, 114, 98, 116, 103, 116, 27, 11, 69, 88, 65, 77,
            80, 76, 69, 46, 67, 79, 77, 171, 18, 27, 16, 67, 76, 73, 69, 78, 84, 95, 78, 79, 84,
            95, 70, 79, 85, 78, 68,
        ];
        let kdc = ADDR.parse().unwrap();
        let Ok(Reply::Error(e)) = decode_reply(kdc, &raw) else {
            panic!("not a KRB-ERROR")
        };
        let err = kdc_error(kdc, &e);
        assert!(matches!(
            err,
            KerberosError::Kdc {
                code: 6,
                name: "KDC_ERR_C_PRINCIPAL_UNKNOWN",
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "KDC 127.0.0.1:88 answered KRB-ERROR 6 KDC_ERR_C_PRINCIPAL_UNKNOWN (CLIENT_NOT_FOUND)"
        );
        // Every truncation and every single-byte corruption is an Err or a value, never a panic.
        for cut in 0..raw.len() {
            assert!(decode_reply(kdc, &raw[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0xa5;
            let _ = decode_reply(kdc, &bad);
        }
    }

    #[test]
    fn garbage_reply_is_an_error() {
        let kdc = ADDR.parse().unwrap();
        for raw in [
            &b""[..],
            b"\x6b",
            b"\x6b\x84\xff\xff\xff\xff",
            b"\x7e\x03\x30\x01\x00",
            b"HTTP/1.1 400 Bad Request",
        ] {
            assert!(
                matches!(decode_reply(kdc, raw), Err(KerberosError::Malformed { .. })),
                "{raw:?}"
            );
        }
        assert_eq!(error_name(24), "KDC_ERR_PREAUTH_FAILED");
        assert_eq!(error_name(30), "(unknown error code)");
        assert_eq!(error_name(u32::MAX), "(unknown error code)");
    }

    #[test]
    fn kerberos_time_is_utc_calendar() {
        let t = UNIX_EPOCH + Duration::from_secs(1_709_210_096); // 2024-02-29T12:34:56Z
        let der = picky_asn1_der::to_vec(&kerberos_time(t).unwrap()).unwrap();
        assert_eq!(&der[2..], b"20240229123456Z");
    }

    #[test]
    fn ints_roundtrip() {
        for v in [0, 1, 127, 128, 255, 256, 0x7fff_ffff, -1, -129] {
            assert_eq!(int_value(&int(v)), Some(v));
        }
    }

    #[tokio::test]
    async fn keytab_without_aes_is_refused() {
        let des = KeytabEntry {
            principal: "p@R".into(),
            realm: "R".into(),
            kvno: 1,
            enctype: 23,
            key: vec![0; 16],
        };
        let err = as_exchange(ADDR.parse().unwrap(), &[des], Duration::from_secs(1))
            .await
            .err()
            .unwrap();
        assert!(matches!(err, KerberosError::NoUsableKey(_)), "{err}");
    }
}
