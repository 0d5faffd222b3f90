//! The daemons' own files, rendered from [`IdentityConfig`]: `slapd.conf`
//! and the Kerberos schema for slapd, `krb5.conf` and `kdc.conf` for the
//! KDC, kadmind and `kadmin.local`, and kadmind's ACL.
//!
//! Everything lives in the run dir (rendered anew at every configure) or
//! the state dir (the directory database, the master key stash, the TLS
//! key, the probe's keytab), never in /etc/krb5.conf or /etc/ldap: a hub
//! may run other Kerberos clients, and an admin may take the files over.
//!
//! Security decisions are written here, once (docs/services/identity.md
//! explains them): pre-authentication on every principal, AES only, simple
//! binds only with TLS or over ldapi (`security simple_bind=71`), nothing
//! for anonymous users but the root DSE, and keys readable by nobody — the
//! KDC reads them as the directory's root, which bypasses every ACL.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ntari_node::service::{Paths, RenderedFile};

use crate::config::{seconds, IdentityConfig};

pub const SLAPD_CONF: &str = "slapd.conf";
/// slapd.conf for `slaptest` alone: the same, but with its database, pid
/// and args files in the run dir, which always exists when the checker
/// runs (`check-config` renders into a throw-away dir, where slapd's own
/// dirs do not exist yet; slaptest refuses a missing `directory`).
pub const SLAPD_CHECK_CONF: &str = "slapd-check.conf";
pub const KERBEROS_SCHEMA: &str = "kerberos.schema";
pub const KRB5_CONF: &str = "krb5.conf";
pub const KDC_CONF: &str = "kdc.conf";
pub const KADM5_ACL: &str = "kadm5.acl";
/// The KDC's log, which the probe reads for request counts.
pub const KDC_LOG: &str = "krb5kdc.log";
/// kadmind's log: a file, not the node's log, because kadmind logs every
/// connection the probe makes (one line per probe, for ever).
pub const KADMIND_LOG: &str = "kadmind.log";
/// slapd's own directory in the run dir (owned by slapd's user): its
/// pid file, args file and ldapi socket.
pub const SLAPD_RUN_DIR: &str = "slapd";

/// MIT krb5's LDAP schema (from krb5's src/plugins/kdb/ldap/libkdb_ldap/
/// kerberos.schema, MIT licence), carried here so the node does not depend
/// on where a distribution puts it (Debian: gzipped under /usr/share/doc).
const KERBEROS_SCHEMA_TEXT: &str = include_str!("../schema/kerberos.schema");

/// The principal the probe logs in as; its keys are in [`Layout::probe_keytab`].
pub const PROBE_PRINCIPAL: &str = "ntari-probe";
/// The realm's administrator (keytab in the state dir; kadm5.acl grants it all).
pub const ADMIN_PRINCIPAL: &str = "admin/admin";

/// Where each file is, from the node's [`Paths`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub run_dir: PathBuf,
    pub state_dir: PathBuf,
}

impl Layout {
    pub fn new(paths: &Paths) -> Layout {
        Layout {
            run_dir: paths.run_dir.clone(),
            state_dir: paths.state_dir.clone(),
        }
    }
    pub fn slapd_conf(&self) -> PathBuf {
        self.run_dir.join(SLAPD_CONF)
    }
    pub fn krb5_conf(&self) -> PathBuf {
        self.run_dir.join(KRB5_CONF)
    }
    pub fn kdc_conf(&self) -> PathBuf {
        self.run_dir.join(KDC_CONF)
    }
    pub fn kdc_log(&self) -> PathBuf {
        self.run_dir.join(KDC_LOG)
    }
    pub fn kadmind_log(&self) -> PathBuf {
        self.run_dir.join(KADMIND_LOG)
    }
    pub fn slapd_run_dir(&self) -> PathBuf {
        self.run_dir.join(SLAPD_RUN_DIR)
    }
    pub fn ldapi_socket(&self) -> PathBuf {
        self.slapd_run_dir().join("ldapi")
    }
    /// `ldapi://%2Frun%2F…%2Fldapi`, the URL form of the socket.
    pub fn ldapi_url(&self) -> String {
        let path = self.ldapi_socket().display().to_string();
        format!("ldapi://{}", path.replace('%', "%25").replace('/', "%2F"))
    }
    pub fn slapd_pid(&self) -> PathBuf {
        self.slapd_run_dir().join("slapd.pid")
    }
    pub fn database_dir(&self) -> PathBuf {
        self.state_dir.join("ldap")
    }
    pub fn stash(&self) -> PathBuf {
        self.state_dir.join("stash")
    }
    pub fn tls_dir(&self) -> PathBuf {
        self.state_dir.join("tls")
    }
    pub fn tls_cert(&self) -> PathBuf {
        self.tls_dir().join("cert.pem")
    }
    pub fn tls_key(&self) -> PathBuf {
        self.tls_dir().join("key.pem")
    }
    pub fn probe_keytab(&self) -> PathBuf {
        self.state_dir.join("probe.keytab")
    }
    pub fn admin_keytab(&self) -> PathBuf {
        self.state_dir.join("admin.keytab")
    }
    /// The provisioning record (see [`crate::provision`]).
    pub fn provision_record(&self) -> PathBuf {
        self.state_dir.join("provisioned.json")
    }
    /// The password policy kadmin last took (see [`crate::provision::sync_policy`]).
    pub fn applied_policy(&self) -> PathBuf {
        self.state_dir.join("policy-applied")
    }
    /// Realms this one trusts (`ntari-admin identity trust add`), one
    /// `REALM kdc-host:port` line each, read into `krb5.conf`.
    pub fn trusts(&self) -> PathBuf {
        self.state_dir.join("trusts")
    }

    /// The environment every MIT tool needs to find this realm's files.
    pub fn krb5_env(&self) -> Vec<(String, String)> {
        vec![
            ("KRB5_CONFIG".into(), self.krb5_conf().display().to_string()),
            (
                "KRB5_KDC_PROFILE".into(),
                self.kdc_conf().display().to_string(),
            ),
            ("KRB5RCACHEDIR".into(), self.run_dir.display().to_string()),
        ]
    }
}

/// Where this distribution keeps OpenLDAP's schemas and modules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub schema_dir: PathBuf,
    pub module_dir: PathBuf,
}

impl Platform {
    /// Debian's paths, else Alpine's.
    pub fn detect() -> Platform {
        let first = |candidates: &[&str]| {
            candidates
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
                .unwrap_or_else(|| PathBuf::from(candidates[0]))
        };
        Platform {
            schema_dir: first(&["/etc/ldap/schema", "/etc/openldap/schema"]),
            module_dir: first(&["/usr/lib/ldap", "/usr/lib/openldap"]),
        }
    }

    fn has_module(&self, name: &str) -> bool {
        self.module_dir.join(format!("{name}.so")).exists()
    }
}

/// A trusted realm, as `ntari-admin identity trust add` records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedRealm {
    pub realm: String,
    pub kdc: String,
}

/// Reads [`Layout::trusts`]; a missing file is no trusts, a bad line is
/// skipped (the CLI writes the file, atomically).
pub fn read_trusts(path: &Path) -> Vec<TrustedRealm> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let realm = words.next()?.to_string();
            let kdc = words.next()?.to_string();
            Some(TrustedRealm { realm, kdc })
        })
        .collect()
}

pub fn render_all(config: &IdentityConfig, paths: &Paths) -> Vec<RenderedFile> {
    let layout = Layout::new(paths);
    let platform = Platform::detect();
    let trusts = read_trusts(&layout.trusts());
    let file = |name: &str, contents: String| RenderedFile {
        name: name.to_string(),
        contents,
        mode: 0o644,
    };
    vec![
        file(SLAPD_CONF, render_slapd_conf(config, &layout, &platform)),
        file(
            SLAPD_CHECK_CONF,
            render_slapd_check_conf(config, &layout, &platform),
        ),
        file(KERBEROS_SCHEMA, KERBEROS_SCHEMA_TEXT.to_string()),
        file(KRB5_CONF, render_krb5_conf(config, &layout, &trusts)),
        file(KDC_CONF, render_kdc_conf(config, &layout)),
        file(KADM5_ACL, render_kadm5_acl(config)),
    ]
}

/// slapd's URLs: ldapi for the KDC, kadmind and the node, then the
/// network listeners.
pub fn slapd_urls(config: &IdentityConfig, layout: &Layout) -> String {
    let mut urls = vec![format!("{}/", layout.ldapi_url())];
    for addr in &config.ldap.listen {
        urls.push(format!("ldap://{}/", host_port(*addr, config.ldap.port)));
        if config.ldap.ldaps_port != 0 {
            urls.push(format!(
                "ldaps://{}/",
                host_port(*addr, config.ldap.ldaps_port)
            ));
        }
    }
    urls.join(" ")
}

fn host_port(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// An address a client on this hub reaches a listener at (`0.0.0.0` →
/// loopback).
pub fn local_address(listen: &[IpAddr], port: u16) -> String {
    let addr = listen
        .iter()
        .copied()
        .find(|a| !a.is_unspecified())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    host_port(addr, port)
}

pub fn render_slapd_conf(config: &IdentityConfig, layout: &Layout, platform: &Platform) -> String {
    let files = SlapdFiles {
        pid: layout.slapd_pid(),
        args: layout.slapd_run_dir().join("slapd.args"),
        database: layout.database_dir(),
    };
    slapd_conf(config, layout, platform, &files)
}

/// [`SLAPD_CHECK_CONF`].
pub fn render_slapd_check_conf(
    config: &IdentityConfig,
    layout: &Layout,
    platform: &Platform,
) -> String {
    let files = SlapdFiles {
        pid: layout.run_dir.join("slapd-check.pid"),
        args: layout.run_dir.join("slapd-check.args"),
        database: layout.run_dir.clone(),
    };
    slapd_conf(config, layout, platform, &files)
}

struct SlapdFiles {
    pid: PathBuf,
    args: PathBuf,
    database: PathBuf,
}

fn slapd_conf(
    config: &IdentityConfig,
    layout: &Layout,
    platform: &Platform,
    files: &SlapdFiles,
) -> String {
    let base = config.base_dn();
    let schema = platform.schema_dir.display();
    let (hash_module, hash) = if platform.has_module("argon2") {
        ("moduleload argon2\n", "{ARGON2}")
    } else {
        ("", "{SSHA}")
    };
    format!(
        "# Rendered by ntari-identity; edit /etc/ntari/services/identity.toml instead.\n\
include {schema}/core.schema\n\
include {schema}/cosine.schema\n\
include {schema}/nis.schema\n\
include {schema}/inetorgperson.schema\n\
include {run}/{KERBEROS_SCHEMA}\n\
pidfile {pid}\n\
argsfile {args}\n\
modulepath {modules}\n\
moduleload back_mdb\n\
moduleload back_monitor\n\
{hash_module}\
password-hash {hash}\n\
loglevel none\n\
TLSCertificateFile {cert}\n\
TLSCertificateKeyFile {key}\n\
TLSProtocolMin 3.3\n\
# No anonymous binds; simple binds need TLS (SSF >= 128) or ldapi (71).\n\
disallow bind_anon\n\
security simple_bind=71\n\
# root on this hub, over ldapi, is the directory's manager: the KDC,\n\
# kadmind, the node's probe and ntari-admin. Nobody else has a password.\n\
authz-regexp \"gidNumber=0\\\\+uidNumber=0,cn=peercred,cn=external,cn=auth\" \"cn=admin,{base}\"\n\
# Anonymous users see the root DSE and nothing else.\n\
access to dn.base=\"\" by * read\n\
access to dn.base=\"cn=Subschema\" by users read by * none\n\
\n\
database mdb\n\
suffix \"{base}\"\n\
rootdn \"cn=admin,{base}\"\n\
directory {db}\n\
maxsize 1073741824\n\
index objectClass eq\n\
index uid,cn,memberUid,member eq\n\
index krbPrincipalName eq,sub\n\
# Keys and password hashes: only the root DN (the KDC) reads them; a\n\
# member cannot read her own. userPassword still checks a simple bind.\n\
access to attrs=krbPrincipalKey,krbPwdHistory,krbMKey,krbExtraData by * none\n\
# A disabled member (kadmin -allow_tix: DISALLOW_ALL_TIX, 0x40) cannot bind.\n\
access to attrs=userPassword filter=(krbTicketFlags:1.2.840.113556.1.4.803:=64) by * none\n\
access to attrs=userPassword by anonymous auth by * none\n\
access to * by users read by * none\n\
\n\
database monitor\n\
access to * by dn.exact=\"cn=admin,{base}\" read by * none\n",
        run = layout.run_dir.display(),
        pid = files.pid.display(),
        args = files.args.display(),
        modules = platform.module_dir.display(),
        cert = layout.tls_cert().display(),
        key = layout.tls_key().display(),
        db = files.database.display(),
    )
}

pub fn render_krb5_conf(
    config: &IdentityConfig,
    layout: &Layout,
    trusts: &[TrustedRealm],
) -> String {
    let realm = config.realm();
    let enctypes = config.enctypes.join(" ");
    let kdc = local_address(&config.kdc.listen, config.kdc.port);
    let admin = local_address(&config.kdc.listen, config.kdc.kadmin_port);
    let kpasswd = local_address(&config.kdc.listen, config.kdc.kpasswd_port);
    let domain = config.domain.trim_end_matches('.');
    let mut text = format!(
        "# Rendered by ntari-identity; edit /etc/ntari/services/identity.toml instead.\n\
[libdefaults]\n\
\tdefault_realm = {realm}\n\
\tdns_lookup_kdc = false\n\
\tdns_lookup_realm = false\n\
\trdns = false\n\
\tallow_weak_crypto = false\n\
\tpermitted_enctypes = {enctypes}\n\
\n\
[realms]\n\
\t{realm} = {{\n\
\t\tkdc = {kdc}\n\
\t\tadmin_server = {admin}\n\
\t\tkpasswd_server = {kpasswd}\n\
\t}}\n"
    );
    for trust in trusts {
        text.push_str(&format!(
            "\t{} = {{\n\t\tkdc = {}\n\t}}\n",
            trust.realm, trust.kdc
        ));
    }
    text.push_str(&format!(
        "\n[domain_realm]\n\t.{domain} = {realm}\n\t{domain} = {realm}\n\
\n\
[dbmodules]\n\
\tldap = {{\n\
\t\tdb_library = kldap\n\
\t\tldap_kerberos_container_dn = cn=krbContainer,{base}\n\
\t\tldap_kdc_sasl_mech = EXTERNAL\n\
\t\tldap_kadmind_sasl_mech = EXTERNAL\n\
\t\tldap_servers = {ldapi}/\n\
\t\tldap_conns_per_server = 2\n\
\t}}\n\
\n\
[plugins]\n\
\tkdcpreauth = {{\n\
\t\tdisable = spake\n\
\t}}\n",
        base = config.base_dn(),
        ldapi = layout.ldapi_url(),
    ));
    text
}

pub fn render_kdc_conf(config: &IdentityConfig, layout: &Layout) -> String {
    let listen = |port: u16| {
        config
            .kdc
            .listen
            .iter()
            .map(|a| host_port(*a, port))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let supported = config
        .enctypes
        .iter()
        .map(|e| format!("{e}:normal"))
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "# Rendered by ntari-identity; edit /etc/ntari/services/identity.toml instead.\n\
[kdcdefaults]\n\
\tkdc_listen = {kdc}\n\
\tkdc_tcp_listen = {kdc}\n\
\trestrict_anonymous_to_tgt = true\n\
\n\
[realms]\n\
\t{realm} = {{\n\
\t\tdatabase_module = ldap\n\
\t\tkey_stash_file = {stash}\n\
\t\tacl_file = {run}/{KADM5_ACL}\n\
\t\tkadmind_listen = {kadmin}\n\
\t\tkpasswd_listen = {kpasswd}\n\
\t\tmaster_key_type = {master}\n\
\t\tsupported_enctypes = {supported}\n\
\t\tmax_life = {max_life}\n\
\t\tmax_renewable_life = {renew}\n\
\t\tdefault_principal_flags = +preauth\n\
\t}}\n\
\n\
[logging]\n\
\tkdc = FILE:{log}\n\
\tadmin_server = FILE:{kadmind_log}\n\
\tdefault = STDERR\n",
        kdc = listen(config.kdc.port),
        kadmin = listen(config.kdc.kadmin_port),
        kpasswd = listen(config.kdc.kpasswd_port),
        realm = config.realm(),
        stash = layout.stash().display(),
        run = layout.run_dir.display(),
        master = config.enctypes[0],
        max_life = seconds(&config.tickets.max_life),
        renew = seconds(&config.tickets.max_renewable_life),
        log = layout.kdc_log().display(),
        kadmind_log = layout.kadmind_log().display(),
    )
}

/// `*/admin` may do everything; nobody else anything (members change their
/// own password over kpasswd, which needs no ACL).
pub fn render_kadm5_acl(config: &IdentityConfig) -> String {
    format!(
        "# Rendered by ntari-identity.\n*/admin@{realm} *\n",
        realm = config.realm()
    )
}

#[cfg(test)]
pub fn default_paths() -> Paths {
    Paths {
        config: "/etc/ntari/services/identity.toml".into(),
        state_dir: "/var/lib/ntari/identity".into(),
        run_dir: "/run/ntari/identity".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> IdentityConfig {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/identity.toml"
        ))
        .expect("example");
        toml::from_str(&text).expect("parses")
    }

    #[test]
    fn urls_and_addresses() {
        let layout = Layout::new(&default_paths());
        assert_eq!(
            layout.ldapi_url(),
            "ldapi://%2Frun%2Fntari%2Fidentity%2Fslapd%2Fldapi"
        );
        let c = IdentityConfig::default();
        assert_eq!(
            slapd_urls(&c, &layout),
            "ldapi://%2Frun%2Fntari%2Fidentity%2Fslapd%2Fldapi/ ldap://0.0.0.0:389/ ldaps://0.0.0.0:636/"
        );
        assert_eq!(local_address(&c.kdc.listen, 88), "127.0.0.1:88");
        let e = example();
        assert_eq!(local_address(&e.kdc.listen, e.kdc.port), "127.0.0.1:18800");
    }

    #[test]
    fn secure_defaults_are_in_the_files() {
        let c = IdentityConfig {
            domain: "coop.lan".into(),
            ..Default::default()
        };
        let layout = Layout::new(&default_paths());
        let platform = Platform {
            schema_dir: "/etc/ldap/schema".into(),
            module_dir: "/nonexistent".into(),
        };
        let slapd = render_slapd_conf(&c, &layout, &platform);
        assert!(slapd.contains("disallow bind_anon\n"));
        assert!(slapd.contains("security simple_bind=71\n"));
        assert!(slapd.contains(
            "access to attrs=krbPrincipalKey,krbPwdHistory,krbMKey,krbExtraData by * none\n"
        ));
        assert!(slapd.contains("access to attrs=userPassword by anonymous auth by * none\n"));
        assert!(slapd.contains("suffix \"dc=coop,dc=lan\"\n"));
        assert!(slapd.contains("password-hash {SSHA}\n"));
        let kdc = render_kdc_conf(&c, &layout);
        assert!(kdc.contains("default_principal_flags = +preauth\n"));
        assert!(kdc.contains(
            "supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal\n"
        ));
        assert!(kdc.contains("max_life = 36000\n"));
        assert!(kdc.contains("max_renewable_life = 604800\n"));
        assert!(kdc.contains("kdc_listen = 0.0.0.0:88\n"));
        let krb5 = render_krb5_conf(&c, &layout, &[]);
        assert!(krb5.contains("allow_weak_crypto = false\n"));
        assert!(krb5.contains("default_realm = COOP.LAN\n"));
        assert!(!krb5.to_lowercase().contains("rc4"));
        assert!(!krb5.contains("des-"));
    }

    #[test]
    fn trusted_realms_get_a_kdc() {
        let c = example();
        let layout = Layout::new(&default_paths());
        let krb5 = render_krb5_conf(
            &c,
            &layout,
            &[TrustedRealm {
                realm: "OTHER.LAN".into(),
                kdc: "10.9.0.2:88".into(),
            }],
        );
        assert!(krb5.contains("\tOTHER.LAN = {\n\t\tkdc = 10.9.0.2:88\n\t}\n"));
    }
}
