//! ntari-identity: the cooperative's members, in the way FreeIPA keeps them
//! at its heart — an MIT Kerberos KDC and kadmind whose principals live in
//! an OpenLDAP directory, on the same entries as the members' accounts,
//! groups and hosts — supervised by a ROS 2 lifecycle node.
//!
//! This crate is only what is specific to those daemons (DESIGN.md §5):
//! - [`config`]: [`IdentityConfig`], `/etc/ntari/services/identity.toml`;
//! - [`render`]: slapd.conf, krb5.conf, kdc.conf, kadm5.acl in the run dir;
//! - [`provision`]: the realm, made once at the first configure, and
//!   [`kadmin`], the one door to its principals;
//! - [`daemons`]: slapd → krb5kdc → kadmind and the dirs they need;
//! - [`probe`] and [`kerberos`]: one in-process exchange per daemon
//!   (LDAP, a Kerberos AS exchange, an RPC call), KDC counts from its log;
//! - [`Identity`], the `Service` impl.
//!
//! Several daemons, one node (docs/services/identity.md): the runtime
//! restarts only the daemon that exited. krb5kdc and kadmind reconnect to
//! slapd by themselves, so a slapd crash costs a second of failed logins,
//! not a restart of the others.

pub mod config;
pub mod daemons;
pub mod kadmin;
pub mod kerberos;
pub mod probe;
pub mod provision;
pub mod render;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ntari_node::fsutil::write_atomic;
use ntari_node::service::{
    Command, ConfigIssue, DaemonSpec, MetricDesc, Paths, ProbeReport, Reload, RenderedFile, Service,
};

pub use config::IdentityConfig;
use daemons::{SlapdUser, KADMIND, KRB5KDC, SLAPD};
use render::{local_address, Layout};

/// How long `daemon_started` waits for a daemon to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// The NTARI identity service: slapd, krb5kdc, kadmind.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    kdc_log: Arc<Mutex<Option<probe::KdcLog>>>,
}

impl Identity {
    fn kdc_counts(&self, layout: &Layout) -> std::collections::BTreeMap<(String, String), u64> {
        let Ok(mut guard) = self.kdc_log.lock() else {
            return Default::default();
        };
        let log = guard.get_or_insert_with(|| probe::KdcLog::new(layout.kdc_log()));
        log.update();
        log.counts.clone()
    }
}

fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|e| format!("{text}: {e}"))
}

impl Service for Identity {
    type Config = IdentityConfig;

    const NAME: &'static str = "identity";
    const DAEMON: &'static str = "MIT Kerberos (krb5kdc, kadmind) with OpenLDAP (slapd)";
    const METRICS_PORT: u16 = 9705;

    fn validate(&self, config: &IdentityConfig) -> Result<(), ConfigIssue> {
        config.validate()
    }

    fn render(&self, config: &IdentityConfig, paths: &Paths) -> Vec<RenderedFile> {
        render::render_all(config, paths)
    }

    /// Provisions the realm on the first configure (see [`provision`]);
    /// afterwards only checks that the config names the same realm.
    fn prepare(&self, config: &IdentityConfig, paths: &Paths) -> Result<(), ConfigIssue> {
        let layout = Layout::new(paths);
        provision::provision(config, &layout, || {
            std::fs::create_dir_all(&paths.run_dir)
                .map_err(|e| format!("{}: {e}", paths.run_dir.display()))?;
            for file in render::render_all(config, paths) {
                let path = paths.run_dir.join(&file.name);
                write_atomic(&path, file.contents.as_bytes(), file.mode)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            Ok(())
        })
    }

    /// `slaptest -u` parses slapd.conf (its [`render::SLAPD_CHECK_CONF`]
    /// twin) and loads its schemas and modules without opening the
    /// database. The KDC has no check mode: a bad
    /// kdc.conf shows as krb5kdc exiting at once, with its reason.
    fn check_command(&self, _config: &IdentityConfig, paths: &Paths) -> Option<Command> {
        Some(Command::new(
            "slaptest",
            [
                "-Q".to_string(),
                "-u".into(),
                "-f".into(),
                paths
                    .run_dir
                    .join(render::SLAPD_CHECK_CONF)
                    .display()
                    .to_string(),
            ],
        ))
    }

    fn daemons(&self, config: &IdentityConfig, paths: &Paths) -> Vec<DaemonSpec> {
        let layout = Layout::new(paths);
        // validate() has made sure the user exists: no silent fallback here
        // but for a user deleted in between (slapd then keeps root).
        let user = SlapdUser::resolve(config).unwrap_or(SlapdUser { user: None });
        daemons::specs(config, &layout, &user)
    }

    /// slapd's run dir (owned by its user) may be gone after a reboot;
    /// the KDC's and kadmind's logs (principal names, addresses) are made
    /// 0600 before they open them (they keep an existing file's mode).
    fn set_up(
        &self,
        config: &IdentityConfig,
        paths: &Paths,
    ) -> impl Future<Output = Result<(), String>> + Send {
        let layout = Layout::new(paths);
        let result = SlapdUser::resolve(config)
            .and_then(|user| daemons::prepare_dirs(&layout, &user))
            .and_then(|()| daemons::private_logs(&layout));
        async move { result }
    }

    fn version_command(&self) -> Option<Command> {
        Some(Command::new("slapd", ["-VV"]))
    }

    fn metrics(&self) -> &'static [MetricDesc] {
        probe::METRICS
    }

    /// Waits until the daemon answers: slapd over ldapi (then the password
    /// policy is brought in line with the config), krb5kdc and kadmind on
    /// their TCP ports.
    async fn daemon_started(
        &mut self,
        daemon: &str,
        config: &IdentityConfig,
        paths: &Paths,
    ) -> Result<(), String> {
        let layout = Layout::new(paths);
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last_error = String::new();
        while Instant::now() < deadline {
            let answer = match daemon {
                SLAPD => probe::probe_ldap(&layout.ldapi_url(), &config.base_dn())
                    .await
                    .map(|_| ()),
                KRB5KDC => tcp_answers(&local_address(&config.kdc.listen, config.kdc.port)).await,
                KADMIND => {
                    match socket_addr(&local_address(&config.kdc.listen, config.kdc.kadmin_port)) {
                        Ok(addr) => probe::probe_kadmind(addr).await.map(|_| ()),
                        Err(e) => Err(e),
                    }
                }
                _ => Ok(()),
            };
            match answer {
                Ok(()) if daemon == SLAPD => {
                    let (config, layout) = (config.clone(), layout.clone());
                    return tokio::task::spawn_blocking(move || {
                        provision::sync_policy(&config, &layout)
                    })
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("applying password_policy: {e}"));
                }
                Ok(()) => return Ok(()),
                Err(e) => last_error = e,
            }
            // Each try is one cheap local exchange; a short step keeps
            // the start quick (each daemon is ready in 15-30 ms).
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Err(format!(
            "{daemon} did not answer within {}s: {last_error}",
            READY_TIMEOUT.as_secs()
        ))
    }

    /// LDAP, Kerberos and kadmind at once; the error names each daemon
    /// that failed.
    fn probe(
        &self,
        config: &IdentityConfig,
        paths: &Paths,
    ) -> impl Future<Output = Result<ProbeReport, String>> + Send {
        let layout = Layout::new(paths);
        let counts = self.kdc_counts(&layout);
        probe::trim_log(&layout.kadmind_log());
        let kdc = socket_addr(&local_address(&config.kdc.listen, config.kdc.port));
        let kadmin = socket_addr(&local_address(&config.kdc.listen, config.kdc.kadmin_port));
        let base_dn = config.base_dn();
        async move {
            let ldapi_url = layout.ldapi_url();
            let ldap = probe::probe_ldap(&ldapi_url, &base_dn);
            let krb = async {
                let keytab =
                    kerberos::read_keytab(&layout.probe_keytab()).map_err(|e| e.to_string())?;
                kerberos::as_exchange(kdc?, &keytab, probe::PROBE_TIMEOUT)
                    .await
                    .map_err(|e| e.to_string())
            };
            let kadm = async { probe::probe_kadmind(kadmin?).await };
            let (ldap, krb, kadm) = tokio::join!(ldap, krb, kadm);
            match (ldap, krb, kadm) {
                (Ok(ldap), Ok(krb), Ok(kadm)) => {
                    let (detail, metrics) = probe::report(&ldap, &krb, kadm, &counts);
                    Ok(ProbeReport {
                        detail,
                        metrics,
                        warnings: Vec::new(),
                    })
                }
                (ldap, krb, kadm) => {
                    let failed: Vec<String> = [
                        (SLAPD, ldap.err()),
                        (KRB5KDC, krb.err()),
                        (KADMIND, kadm.err()),
                    ]
                    .into_iter()
                    .filter_map(|(d, e)| e.map(|e| format!("{d}: {e}")))
                    .collect();
                    Err(failed.join("; "))
                }
            }
        }
    }

    /// Always a restart: none of the three re-reads its files on a signal
    /// that would cover everything (slapd has no reload at all with
    /// slapd.conf; the KDC re-reads nothing). A restart takes ~0.3 s.
    fn reload(&self, _old: &IdentityConfig, _new: &IdentityConfig) -> Reload {
        Reload::Restart
    }
}

async fn tcp_answers(addr: &str) -> Result<(), String> {
    let addr = socket_addr(addr)?;
    tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| format!("{addr}: no answer"))?
        .map(|_| ())
        .map_err(|e| format!("{addr}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::default_paths;

    #[test]
    fn commands() {
        let c = IdentityConfig {
            ldap: config::Ldap {
                user: Some("root".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let p = default_paths();
        assert_eq!(
            Identity::default()
                .check_command(&c, &p)
                .map(|c| c.display()),
            Some("slaptest -Q -u -f /run/ntari/identity/slapd-check.conf".to_string())
        );
        let specs = Identity::default().daemons(&c, &p);
        let names: Vec<_> = specs.iter().map(|s| s.name).collect();
        assert_eq!(names, ["slapd", "krb5kdc", "kadmind"]);
        assert_eq!(
            specs[0].command.display(),
            "prlimit --nofile=1024:1024 -- slapd -d none -h ldapi://%2Frun%2Fntari%2Fidentity%2Fslapd%2Fldapi/ ldap://0.0.0.0:389/ ldaps://0.0.0.0:636/ -f /run/ntari/identity/slapd.conf"
        );
        assert_eq!(
            specs[1].command.display(),
            "KRB5_CONFIG=/run/ntari/identity/krb5.conf KRB5_KDC_PROFILE=/run/ntari/identity/kdc.conf KRB5RCACHEDIR=/run/ntari/identity krb5kdc -n"
        );
        assert!(specs.iter().all(|s| s.required));
    }
}
