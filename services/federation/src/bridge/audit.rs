//! The bridge's handle on the audit log: shared by the main loop and every
//! link; a write error is logged, never fatal (the bridge keeps forwarding
//! what the agreements allow, and the next entry tries again).

use std::sync::{Arc, Mutex};

use crate::audit::AuditLog;

#[derive(Clone)]
pub struct Audit {
    log: Arc<Mutex<Option<AuditLog>>>,
}

impl Audit {
    pub fn new(log: Option<AuditLog>) -> Audit {
        Audit {
            log: Arc::new(Mutex::new(log)),
        }
    }

    pub fn record(&self, event: &str, detail: serde_json::Value) {
        tracing::info!(event, %detail, "audit");
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(log) = log.as_mut() {
            if let Err(e) = log.append(event, detail) {
                tracing::error!(error = %e, "cannot append to the federation audit log");
            }
        }
    }
}
