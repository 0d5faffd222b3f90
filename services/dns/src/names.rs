//! The names DHCP leases give (the rules for DNS names themselves are
//! `ntari_node::validate`'s).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ntari_schemas::leases::Lease;

/// The name a DHCP client's hostname gives in the local domain, lower case,
/// or None when it cannot be a DNS label. Like dnsmasq's own DHCP server, a
/// domain part the client sent (`laptop.example.org`) is dropped: clients do
/// not choose the domain they live in.
pub fn lease_label(hostname: &str) -> Option<String> {
    let first = hostname.trim().split('.').next()?;
    let label = first.to_ascii_lowercase();
    ntari_node::validate::dns_label(&label).ok().map(|()| label)
}

/// The names DHCP leases give, kept from the last `/ntari/dhcp/leases`
/// message. Times are seconds since the Unix epoch.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LeaseNames {
    /// One entry per label: the lease with the latest expiry.
    by_label: BTreeMap<String, (IpAddr, u64)>,
    /// Leases whose hostname made no valid label (for status).
    invalid: usize,
    /// The earliest expiry still in the future at the last check.
    next_expiry: Option<u64>,
}

impl LeaseNames {
    /// Replaces the table with `leases` (a message's whole table). Returns
    /// whether the names that resolve at `now` changed.
    pub fn replace(&mut self, leases: &[Lease], now: u64) -> bool {
        let before = self.owned_live(now);
        self.by_label.clear();
        self.invalid = 0;
        for lease in leases {
            // No name, or an empty one (how some servers record "none").
            let Some(hostname) = lease.hostname.as_deref().filter(|h| !h.trim().is_empty()) else {
                continue;
            };
            let Some(label) = lease_label(hostname) else {
                self.invalid += 1;
                continue;
            };
            let entry = self
                .by_label
                .entry(label)
                .or_insert((lease.ip, lease.expiry));
            // Two leases, one name: the client that renewed last has it.
            if (lease.expiry, lease.ip) > (entry.1, entry.0) {
                *entry = (lease.ip, lease.expiry);
            }
        }
        self.next_expiry = self.earliest_expiry_after(now);
        before != self.owned_live(now)
    }

    fn owned_live(&self, now: u64) -> Vec<(String, IpAddr)> {
        self.live(now)
            .into_iter()
            .map(|(label, ip)| (label.to_string(), ip))
            .collect()
    }

    /// For the once-a-second tick: whether a name stopped resolving since
    /// the last call (so the hosts file must be rewritten).
    pub fn expire(&mut self, now: u64) -> bool {
        match self.next_expiry {
            Some(t) if t <= now => {
                self.next_expiry = self.earliest_expiry_after(now);
                true
            }
            _ => false,
        }
    }

    fn earliest_expiry_after(&self, now: u64) -> Option<u64> {
        self.by_label
            .values()
            .map(|&(_, expiry)| expiry)
            .filter(|&expiry| expiry > now)
            .min()
    }

    /// The names that resolve at `now`, sorted by label.
    pub fn live(&self, now: u64) -> Vec<(&str, IpAddr)> {
        self.by_label
            .iter()
            .filter(|(_, &(_, expiry))| expiry > now)
            .map(|(label, &(ip, _))| (label.as_str(), ip))
            .collect()
    }

    /// Leases whose hostname could not be a DNS name, in the last table.
    pub fn invalid(&self) -> usize {
        self.invalid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(ip: &str, hostname: Option<&str>, expiry: u64) -> Lease {
        Lease {
            ip: ip.parse().unwrap(),
            mac: "52:54:00:00:00:01".parse().unwrap(),
            hostname: hostname.map(str::to_string),
            expiry,
        }
    }

    #[test]
    fn lease_hostnames_become_lower_case_labels_or_nothing() {
        assert_eq!(lease_label("Johns-Laptop").as_deref(), Some("johns-laptop"));
        assert_eq!(lease_label("laptop.example.org").as_deref(), Some("laptop"));
        assert_eq!(lease_label(" pi4 ").as_deref(), Some("pi4"));
        for bad in [
            "",
            ".",
            "John's iPhone",
            "under_score",
            "-x",
            "ünïcode",
            ".hidden",
        ] {
            assert_eq!(lease_label(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_table_is_replaced_and_changes_are_reported() {
        let mut names = LeaseNames::default();
        let now = 1000;
        assert!(names.replace(&[lease("10.0.0.2", Some("Laptop"), 2000)], now));
        assert_eq!(
            names.live(now),
            vec![("laptop", "10.0.0.2".parse().unwrap())]
        );
        // A renewal only moves the expiry: nothing to rewrite.
        assert!(!names.replace(&[lease("10.0.0.2", Some("laptop"), 3000)], now));
        // No hostname, a bad one: no name, the bad one counted.
        assert!(names.replace(
            &[
                lease("10.0.0.3", None, 3000),
                lease("10.0.0.4", Some("a b"), 3000)
            ],
            now
        ));
        assert_eq!(names.live(now), vec![]);
        assert_eq!(names.invalid(), 1);
    }

    #[test]
    fn one_name_two_leases_goes_to_the_latest() {
        let mut names = LeaseNames::default();
        names.replace(
            &[
                lease("10.0.0.2", Some("pi"), 2000),
                lease("10.0.0.9", Some("PI"), 2500),
                lease("10.0.0.5", Some("pi"), 1500),
            ],
            1000,
        );
        assert_eq!(names.live(1000), vec![("pi", "10.0.0.9".parse().unwrap())]);
    }

    #[test]
    fn names_expire_by_time_alone() {
        let mut names = LeaseNames::default();
        names.replace(
            &[
                lease("10.0.0.2", Some("a"), 1010),
                lease("10.0.0.3", Some("b"), 1020),
                lease("10.0.0.4", Some("old"), 900),
            ],
            1000,
        );
        assert_eq!(
            names.live(1000).len(),
            2,
            "an already expired lease gives no name"
        );
        assert!(!names.expire(1009));
        assert!(names.expire(1010));
        assert_eq!(names.live(1010), vec![("b", "10.0.0.3".parse().unwrap())]);
        assert!(!names.expire(1011), "reported once");
        assert!(names.expire(1030));
        assert!(names.live(1030).is_empty());
        assert!(!names.expire(5000), "nothing left to expire");
    }
}
