//! The client's metrics in Prometheus text format: outbox depth and oldest age, delivery
//! latency, token failures by class, and each credential's expiry time.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::classify::Failure;

/// The class of a token failure.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureClass {
    /// `credential`, `transient`, `token_rejected` or `permanent`.
    pub class: String,
}

/// A credential.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Credential {
    /// `keyId`.
    pub key_id: String,
}

/// The metrics. Values hold no secrets: counts, ages, times and key ids only.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Queued and in-flight messages.
    pub outbox_depth: Gauge,
    /// Age of the oldest waiting message, seconds.
    pub oldest_age_seconds: Gauge,
    /// Enqueue-to-delivery latency, seconds.
    pub delivery_latency: Histogram,
    /// Token failures by class.
    pub token_failures: Family<FailureClass, Counter>,
    /// Each credential's `endDateTime`, Unix seconds.
    pub credential_expiry: Family<Credential, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("maildrill_client");
        let outbox_depth = Gauge::default();
        let oldest_age_seconds = Gauge::default();
        // 1 s to about 9 hours.
        let delivery_latency = Histogram::new(exponential_buckets(1.0, 2.0, 16));
        let token_failures = Family::<FailureClass, Counter>::default();
        let credential_expiry = Family::<Credential, Gauge>::default();
        registry.register(
            "outbox_depth",
            "Queued and in-flight messages",
            outbox_depth.clone(),
        );
        registry.register(
            "oldest_waiting_age_seconds",
            "Age of the oldest waiting message",
            oldest_age_seconds.clone(),
        );
        registry.register(
            "delivery_latency_seconds",
            "Enqueue-to-delivery latency",
            delivery_latency.clone(),
        );
        registry.register(
            "token_failures",
            "Token request failures by class",
            token_failures.clone(),
        );
        registry.register(
            "credential_expiry_timestamp_seconds",
            "endDateTime of each client secret",
            credential_expiry.clone(),
        );
        Metrics {
            registry,
            outbox_depth,
            oldest_age_seconds,
            delivery_latency,
            token_failures,
            credential_expiry,
        }
    }
}

impl Metrics {
    /// Counts a token failure by its class.
    pub fn token_failure(&self, failure: &Failure) {
        let class = match failure {
            Failure::Credential(_) => "credential",
            Failure::Transient { .. } => "transient",
            Failure::TokenRejected => "token_rejected",
            Failure::Permanent { .. } => "permanent",
        };
        self.token_failures
            .get_or_create(&FailureClass {
                class: class.into(),
            })
            .inc();
    }

    /// The metrics in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::classify::CredentialProblem;

    #[test]
    fn metrics_encode_as_prometheus_text() {
        let metrics = Metrics::default();
        metrics.outbox_depth.set(7);
        metrics.delivery_latency.observe(42.0);
        metrics.token_failure(&Failure::Credential(CredentialProblem::Expired));
        metrics.token_failure(&Failure::Credential(CredentialProblem::Expired));
        metrics
            .credential_expiry
            .get_or_create(&Credential {
                key_id: "k1".into(),
            })
            .set(1_739_532_600);
        let text = metrics.encode();
        assert!(text.contains("maildrill_client_outbox_depth 7"), "{text}");
        assert!(
            text.contains("maildrill_client_token_failures_total{class=\"credential\"} 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "maildrill_client_credential_expiry_timestamp_seconds{key_id=\"k1\"} 1739532600"
            ),
            "{text}"
        );
        assert!(
            text.contains("maildrill_client_delivery_latency_seconds_count 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
