//! `metrics:`: the Prometheus endpoint, off unless an address is given.

use std::net::SocketAddr;

use serde::Deserialize;

/// Where and for whom `/metrics` is served.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address to serve on (`127.0.0.1:9617`, or the LAN address for a
    /// Prometheus elsewhere); no endpoint when absent.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// The secret holding a bearer token every scrape must send.
    #[serde(default)]
    pub token_env: Option<String>,
}

impl MetricsConfig {
    /// Checks the secret's name; `(key, message)` on error.
    pub fn check(&self) -> Result<(), (String, String)> {
        match &self.token_env {
            Some(name)
                if name.is_empty()
                    || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
            {
                Err((
                    "metrics.token_env".into(),
                    format!("{name:?} is not a secret's name (letters, digits and _)"),
                ))
            }
            _ => Ok(()),
        }
    }

    /// What weakens the appliance: metrics for the whole LAN without a token.
    pub fn warning(&self) -> Option<String> {
        let addr = self.listen?;
        (!addr.ip().is_loopback() && self.token_env.is_none()).then(|| {
            format!(
                "metrics.listen {addr} serves the appliance's state to anyone on that network \
                 without a token: set metrics.token_env (a bearer token from the secrets)"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> MetricsConfig {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn off_by_default_and_a_lan_address_without_a_token_is_a_warning() {
        let off = MetricsConfig::default();
        assert!(off.listen.is_none() && off.check().is_ok() && off.warning().is_none());
        assert!(cfg("listen: 127.0.0.1:9617").warning().is_none());
        let lan = cfg("listen: 192.168.1.2:9617");
        assert!(lan.warning().unwrap().contains("without a token"));
        assert!(
            cfg("{listen: '192.168.1.2:9617', token_env: METRICS_TOKEN}")
                .warning()
                .is_none()
        );
        let (key, message) = cfg("token_env: 'a b'").check().unwrap_err();
        assert_eq!(key, "metrics.token_env");
        assert!(message.contains("\"a b\""), "{message}");
        assert!(serde_yaml_ng::from_str::<MetricsConfig>("listen: nowhere").is_err());
    }
}
