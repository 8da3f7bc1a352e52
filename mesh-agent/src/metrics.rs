//! The agent's metrics: one Prometheus registry (text exposition through
//! `GET /v1/agent/metrics?format=prometheus`, and a Consul-shaped JSON summary without it).
//!
//! The HTTP API records its requests, ACL and intention decisions and the leaf certificates
//! it issues; the data plane (gateways, sidecars) records through the public methods here;
//! the replication gauges are set from [`mesh::Datacenter::replication_status`] when
//! scraped. Label values are bounded by what the caller passes (route templates, reasons).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::{Map, Value, json};

/// The prefix of every metric name.
pub const PREFIX: &str = "mesh";

type Labels = Vec<(&'static str, String)>;
type Counters = Family<Labels, Counter>;
type Gauges = Family<Labels, Gauge>;
type FloatGauges = Family<Labels, Gauge<f64, AtomicU64>>;

/// Which way bytes went through a gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the client towards the service.
    Inbound,
    /// From the service back to the client.
    Outbound,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }
}

/// The agent's metrics. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Metrics {
    registry: Registry,
    http_requests: Counters,
    acl_decisions: Counters,
    intention_decisions: Counters,
    leaf_certificates: Counter,
    gateway_connections: Counters,
    gateway_bytes: Counters,
    gateway_refusals: Counters,
    sidecar_handshakes: Counters,
    replication_index: Gauges,
    replication_staleness: FloatGauges,
    leaf_expiry: FloatGauges,
    replication_failures: Gauges,
    replication_running: Gauges,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered, all at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let http_requests = Counters::default();
        registry.register(
            "http_requests",
            "HTTP API requests, by route template, method and status",
            http_requests.clone(),
        );
        let acl_decisions = Counters::default();
        registry.register(
            "acl_decisions",
            "ACL checks made by the HTTP API, by decision (allowed or denied)",
            acl_decisions.clone(),
        );
        let intention_decisions = Counters::default();
        registry.register(
            "intention_decisions",
            "Intention checks answered (authorize and check endpoints), by decision",
            intention_decisions.clone(),
        );
        let leaf_certificates = Counter::default();
        registry.register(
            "leaf_certificates_issued",
            "Leaf certificates signed for the agent's leaf endpoint",
            leaf_certificates.clone(),
        );
        let gateway_connections = Counters::default();
        registry.register(
            "gateway_connections",
            "Connections accepted by mesh gateways, by gateway",
            gateway_connections.clone(),
        );
        let gateway_bytes = Counters::default();
        registry.register(
            "gateway_bytes",
            "Bytes relayed by mesh gateways, by gateway and direction",
            gateway_bytes.clone(),
        );
        let gateway_refusals = Counters::default();
        registry.register(
            "gateway_refusals",
            "Connections refused by mesh gateways, by gateway and reason",
            gateway_refusals.clone(),
        );
        let sidecar_handshakes = Counters::default();
        registry.register(
            "sidecar_handshakes",
            "Inbound mTLS handshakes of sidecars, by service, result and reason",
            sidecar_handshakes.clone(),
        );
        let replication_index = Gauges::default();
        registry.register(
            "replication_index",
            "The primary's index each replicated table reflects, by table",
            replication_index.clone(),
        );
        let leaf_expiry = FloatGauges::default();
        registry.register(
            "leaf_certificate_expiry_seconds",
            "Seconds until the soonest-expiring leaf the agent holds for each service expires",
            leaf_expiry.clone(),
        );
        let replication_staleness = FloatGauges::default();
        registry.register(
            "replication_staleness_seconds",
            "Seconds since each table last replicated successfully (-1 before the first), by table",
            replication_staleness.clone(),
        );
        let replication_failures = Gauges::default();
        registry.register(
            "replication_consecutive_failures",
            "Replication rounds failed since the last success, by table",
            replication_failures.clone(),
        );
        let replication_running = Gauges::default();
        registry.register(
            "replication_running",
            "Whether each table's replicator runs (1) or stopped (0), by table",
            replication_running.clone(),
        );
        Self {
            registry,
            http_requests,
            acl_decisions,
            intention_decisions,
            leaf_certificates,
            gateway_connections,
            gateway_bytes,
            gateway_refusals,
            sidecar_handshakes,
            replication_index,
            replication_staleness,
            leaf_expiry,
            replication_failures,
            replication_running,
        }
    }

    /// Counts one HTTP API request (`route` is the route template, e.g.
    /// `/v1/acl/policy/{id}`, so the label set stays bounded).
    pub fn http_request(&self, route: &str, method: &str, status: u16) {
        self.http_requests
            .get_or_create(&vec![
                ("route", route.to_owned()),
                ("method", method.to_owned()),
                ("status", status.to_string()),
            ])
            .inc();
    }

    /// Counts one ACL decision.
    pub fn acl_decision(&self, allowed: bool) {
        self.acl_decisions.get_or_create(&decision(allowed)).inc();
    }

    /// Counts one intention decision.
    pub fn intention_decision(&self, allowed: bool) {
        self.intention_decisions
            .get_or_create(&decision(allowed))
            .inc();
    }

    /// Counts one leaf certificate issued.
    pub fn leaf_issued(&self) {
        self.leaf_certificates.inc();
    }

    /// Counts a connection a gateway accepted.
    pub fn gateway_connection(&self, gateway: &str) {
        self.gateway_connections
            .get_or_create(&vec![("gateway", gateway.to_owned())])
            .inc();
    }

    /// Counts bytes a gateway relayed.
    pub fn gateway_bytes(&self, gateway: &str, direction: Direction, bytes: u64) {
        self.gateway_bytes
            .get_or_create(&vec![
                ("gateway", gateway.to_owned()),
                ("direction", direction.as_str().to_owned()),
            ])
            .inc_by(bytes);
    }

    /// Counts a connection a gateway refused, by a short reason (`no_route`, `bad_sni`,
    /// `timeout`, ...).
    pub fn gateway_refusal(&self, gateway: &str, reason: &str) {
        self.gateway_refusals
            .get_or_create(&vec![
                ("gateway", gateway.to_owned()),
                ("reason", reason.to_owned()),
            ])
            .inc();
    }

    /// Counts a sidecar's inbound handshake: accepted, or refused with a short reason
    /// (`intention`, `certificate`, ...).
    pub fn sidecar_handshake(&self, service: &str, accepted: bool, reason: &str) {
        self.sidecar_handshakes
            .get_or_create(&vec![
                ("service", service.to_owned()),
                (
                    "result",
                    if accepted { "accepted" } else { "refused" }.to_owned(),
                ),
                ("reason", reason.to_owned()),
            ])
            .inc();
    }

    /// Sets the replication gauges from the datacenter's status (call before encoding).
    pub fn set_replication(&self, statuses: &[mesh::replication_engine::ReplicationStatus]) {
        for st in statuses {
            let l = vec![("table", st.table.as_str().to_owned())];
            self.replication_index
                .get_or_create(&l)
                .set(i64::try_from(st.last_remote_index.0).unwrap_or(i64::MAX));
            self.replication_staleness
                .get_or_create(&l)
                .set(st.staleness().map_or(-1.0, |d| d.as_secs_f64()));
            self.replication_failures
                .get_or_create(&l)
                .set(i64::from(st.consecutive_failures));
            self.replication_running
                .get_or_create(&l)
                .set(i64::from(st.running));
        }
    }

    /// Sets, per service, the seconds until the soonest-expiring leaf the agent holds expires
    /// (call before encoding).
    pub fn set_leaf_expiry(&self, per_service: &[(String, f64)]) {
        for (service, secs) in per_service {
            self.leaf_expiry
                .get_or_create(&vec![("service", service.clone())])
                .set(*secs);
        }
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn encode_openmetrics(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// A summary in the shape of Consul's `/v1/agent/metrics` JSON: `Timestamp`, `Gauges`,
    /// `Points`, `Counters` and `Samples`, names with dots (`mesh.http_requests`). Counters
    /// are cumulative since start (mesh keeps no intervals).
    pub fn summary_json(&self) -> Value {
        let text = self.encode_openmetrics();
        let mut types: Map<String, Value> = Map::new();
        let mut gauges = Vec::new();
        let mut counters = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                if let Some((name, kind)) = rest.split_once(' ') {
                    types.insert(name.to_owned(), json!(kind));
                }
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let Some((name, labels, value)) = parse_sample(line) else {
                continue;
            };
            let base = name.strip_suffix("_total").unwrap_or(&name);
            let dotted = base.replacen('_', ".", 1);
            let is_counter = types.get(base).and_then(Value::as_str) == Some("counter");
            if is_counter {
                counters.push(json!({
                    "Name": dotted, "Count": value as u64, "Rate": value / 10.0,
                    "Sum": value, "Min": 1, "Max": 1, "Mean": 1, "Stddev": 0,
                    "Labels": labels,
                }));
            } else {
                gauges.push(json!({"Name": dotted, "Value": value, "Labels": labels}));
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        json!({
            "Timestamp": go_time(now - now.rem_euclid(10)),
            "Gauges": gauges,
            "Points": [],
            "Counters": counters,
            "Samples": [],
        })
    }
}

fn decision(allowed: bool) -> Labels {
    vec![(
        "decision",
        if allowed { "allowed" } else { "denied" }.to_owned(),
    )]
}

/// Parses `name{a="x",b="y"} value` (label values with `\"`, `\\`, `\n` escapes).
fn parse_sample(line: &str) -> Option<(String, Map<String, Value>, f64)> {
    let mut labels = Map::new();
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) if line.as_bytes()[i] == b'{' => {
            let name = &line[..i];
            let chars = line[i + 1..].char_indices();
            let body = &line[i + 1..];
            let mut end = None;
            let mut key = String::new();
            let mut val = String::new();
            let mut in_value = false;
            let mut escaped = false;
            for (j, c) in chars {
                if in_value {
                    if escaped {
                        val.push(if c == 'n' { '\n' } else { c });
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        labels.insert(std::mem::take(&mut key), json!(std::mem::take(&mut val)));
                        in_value = false;
                    } else {
                        val.push(c);
                    }
                } else if c == '}' {
                    end = Some(j);
                    break;
                } else if c == '"' {
                    in_value = true;
                } else if c != '=' && c != ',' {
                    key.push(c);
                }
            }
            let end = end?;
            (name.to_owned(), body[end + 1..].trim())
        }
        Some(i) => (line[..i].to_owned(), line[i..].trim()),
        None => return None,
    };
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some((name, labels, value))
}

/// Go's `time.Time.String()` of a UTC time: `2017-08-08 02:55:10 +0000 UTC`.
fn go_time(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} +0000 UTC",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn exposition_and_summary() {
        let m = Metrics::new();
        m.http_request("/v1/acl/policy/{id}", "GET", 200);
        m.http_request("/v1/acl/policy/{id}", "GET", 200);
        m.acl_decision(false);
        m.leaf_issued();
        m.gateway_bytes("gw", Direction::Inbound, 42);
        let text = m.encode_openmetrics();
        assert!(
            text.contains(
                "mesh_http_requests_total{route=\"/v1/acl/policy/{id}\",method=\"GET\",status=\"200\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains("mesh_acl_decisions_total{decision=\"denied\"} 1"));
        assert!(text.contains("mesh_leaf_certificates_issued_total 1"));
        assert!(text.ends_with("# EOF\n"));
        let j = m.summary_json();
        let c = j["Counters"].as_array().unwrap();
        let http = c
            .iter()
            .find(|x| x["Name"] == "mesh.http_requests")
            .unwrap();
        assert_eq!(http["Count"], 2);
        assert_eq!(http["Labels"]["route"], "/v1/acl/policy/{id}");
        assert!(j["Timestamp"].as_str().unwrap().ends_with("+0000 UTC"));
    }

    #[test]
    fn samples_parse() {
        let (n, l, v) = parse_sample("a_b{x=\"1\",y=\"q\\\"z\"} 3.5").unwrap();
        assert_eq!((n.as_str(), v), ("a_b", 3.5));
        assert_eq!(l["y"], "q\"z");
        assert_eq!(parse_sample("c 7").unwrap().2, 7.0);
        assert!(parse_sample("broken{x=\"1\"").is_none());
        assert_eq!(go_time(1_502_160_910), "2017-08-08 02:55:10 +0000 UTC");
    }
}
