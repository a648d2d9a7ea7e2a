//! The host's link to the MQTT broker devices talk to (`devices.mqtt_url`).
//!
//! Topic layout, namespaced by tenant and device (`<prefix>` is `devices.topic_prefix`):
//! - `<prefix>/<tenant>/<device>/up` — the device's telemetry and events (JSON);
//! - `<prefix>/<tenant>/<device>/down` — commands to the device (see [`crate::commands`]);
//! - `<prefix>/<tenant>/<device>/ack` — the device's answers to them.
//!
//! The host subscribes with QoS 1 on a persistent session (`clean_session = false`, a stable
//! client id), so messages queued while it was away arrive when it reconnects — also across a
//! broker restart when the broker keeps its state on disk. With several replicas, set
//! `devices.mqtt_shared_group`: the subscription becomes `$share/<group>/…` and each message
//! reaches one replica. (Mosquitto 2.0 does not keep a shared subscription's queue across its
//! own restart; a plain subscription it does — hence plain by default.) Acknowledgements are
//! manual: a message is acknowledged only after it was checked and handed to the plugins
//! (or refused for good), so a host that dies mid-delivery gets it again. Plugins never see
//! the broker's address or credentials.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::Semaphore;

use crate::config::DevicesConfig;
use crate::platform::{Platform, PlatformError};

/// Messages handled at once; more wait (and stay unacknowledged at the broker).
const IN_FLIGHT: usize = 32;

/// `(host, port)` of an `mqtt://host:port` URL.
pub fn broker_address(url: &str) -> anyhow::Result<(String, u16)> {
    let rest = url
        .strip_prefix("mqtt://")
        .context("devices.mqtt_url must start with mqtt://")?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().context("devices.mqtt_url: bad port")?),
        None => (rest, 1883),
    };
    anyhow::ensure!(!host.is_empty(), "devices.mqtt_url: no host");
    Ok((host.to_owned(), port))
}

/// MQTT options for `client_id` on the configured broker.
pub fn options(cfg: &DevicesConfig, client_id: &str) -> anyhow::Result<MqttOptions> {
    let url = cfg
        .mqtt_url
        .as_deref()
        .context("devices.mqtt_url is not set")?;
    let (host, port) = broker_address(url)?;
    let mut o = MqttOptions::new(client_id, host, port);
    // Short enough that a broker gone silent is noticed within seconds (rumqttc fails the
    // link when a ping goes unanswered until the next one is due).
    o.set_keep_alive(Duration::from_secs(10));
    o.set_max_packet_size(cfg.payload_bytes + 1024, cfg.payload_bytes + 1024);
    if let (Some(user), Some(pass)) = (&cfg.mqtt_username, &cfg.mqtt_password) {
        o.set_credentials(user, pass);
    }
    Ok(o)
}

/// The topic a device publishes its messages on.
pub fn up_topic(prefix: &str, tenant: &str, device: &str) -> String {
    format!("{prefix}/{tenant}/{device}/up")
}

/// What a device sends on: its messages, or answers to commands.
#[derive(Debug, PartialEq, Eq)]
enum Channel {
    Up,
    Ack,
}

/// `(tenant, device, channel)` of a device topic under `prefix`.
fn parse_topic(prefix: &str, topic: &str) -> Option<(String, String, Channel)> {
    let mut parts = topic.split('/');
    if parts.next()? != prefix {
        return None;
    }
    let tenant = parts.next()?;
    let device = parts.next()?;
    let channel = match parts.next()? {
        "up" => Channel::Up,
        "ack" => Channel::Ack,
        _ => return None,
    };
    parts
        .next()
        .is_none()
        .then(|| (tenant.to_owned(), device.to_owned(), channel))
}

/// The link's state, for `/readyz` and `/metrics`.
#[derive(Debug, Default)]
pub struct LinkState {
    configured: AtomicBool,
    connected: AtomicBool,
    /// Bumped on every connect: an acknowledgement is sent only on the connection its
    /// message came on (packet ids are per connection; the broker resends the others).
    generation: AtomicU64,
}

impl LinkState {
    /// `None` when no broker is configured; otherwise whether the link is up now.
    pub fn up(&self) -> Option<bool> {
        self.configured
            .load(Ordering::SeqCst)
            .then(|| self.connected.load(Ordering::SeqCst))
    }
}

/// Messages received and not yet acknowledged past which more are left to the broker to
/// send again (the broker's own in-flight window normally keeps far below this).
const MAX_UNACKNOWLEDGED: i64 = 4096;

/// Run the link until the process ends: connect, subscribe, hand messages to the platform,
/// and reconnect with backoff (0.5 s doubling to 30 s) whenever the broker goes away.
///
/// The event loop never waits for anything but the broker: each message is handled by its
/// own task (at most [`IN_FLIGHT`] at work, the rest queued behind them), and everything the
/// loop asks of the client (subscriptions) is non-blocking. So the loop keeps draining the
/// client's requests — the acknowledgements the tasks send — and answering keepalives, however
/// large the backlog the broker delivers at once.
pub async fn run(platform: Arc<Platform>) -> anyhow::Result<()> {
    let cfg = platform.config.devices.clone();
    let mut opts = options(&cfg, &cfg.mqtt_client_id)?;
    opts.set_clean_session(false);
    opts.set_manual_acks(true);
    let (client, mut eventloop) = AsyncClient::new(opts, 1024);
    platform
        .commands
        .set_publisher(client.clone(), cfg.topic_prefix.clone());
    let filters = ["up", "ack"].map(|c| match &cfg.mqtt_shared_group {
        Some(group) => format!("$share/{group}/{}/+/+/{c}", cfg.topic_prefix),
        None => format!("{}/+/+/{c}", cfg.topic_prefix),
    });
    let link = &platform.mqtt;
    link.configured.store(true, Ordering::SeqCst);
    let metrics = &platform.metrics;
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut backoff = Duration::from_millis(500);
    let mut subscribed = true;
    loop {
        // Asked of the client without waiting (its request queue may be full of
        // acknowledgements only this loop drains); tried again on the next turn if it was.
        if !subscribed && link.connected.load(Ordering::SeqCst) {
            subscribed = filters
                .iter()
                .all(|f| client.try_subscribe(f, QoS::AtLeastOnce).is_ok());
            if !subscribed {
                tracing::warn!("MQTT subscribe queued behind other requests; trying again");
            }
        }
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff = Duration::from_millis(500);
                link.generation.fetch_add(1, Ordering::SeqCst);
                link.connected.store(true, Ordering::SeqCst);
                metrics.mqtt_connected.set(1);
                metrics.mqtt_reconnects.inc();
                tracing::info!(
                    session_present = ack.session_present,
                    "connected to the MQTT broker"
                );
                // Subscribe on every connect: cheap, and right after a broker lost its state.
                subscribed = false;
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {}
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                if metrics.mqtt_unacknowledged.get() >= MAX_UNACKNOWLEDGED {
                    tracing::error!(topic = %publish.topic, "MQTT backlog over {MAX_UNACKNOWLEDGED} messages; this one is left to the broker to send again");
                    continue;
                }
                metrics.mqtt_unacknowledged.inc();
                let generation = link.generation.load(Ordering::SeqCst);
                let (platform, client, slots, prefix) = (
                    platform.clone(),
                    client.clone(),
                    slots.clone(),
                    cfg.topic_prefix.clone(),
                );
                tokio::spawn(async move {
                    let permit = slots.acquire_owned().await;
                    let done = matches!(
                        handle(&platform, &prefix, &publish, generation).await,
                        Handled::Done
                    );
                    drop(permit);
                    let same_link = platform.mqtt.generation.load(Ordering::SeqCst) == generation;
                    if done
                        && same_link
                        && let Err(e) = client.ack(&publish).await
                    {
                        tracing::warn!(error = %e, "MQTT ack failed; the broker will send it again");
                    }
                    platform.metrics.mqtt_unacknowledged.dec();
                });
            }
            Ok(_) => {}
            Err(e) => {
                if link.connected.swap(false, Ordering::SeqCst) {
                    tracing::warn!(error = %e, "MQTT link lost");
                    // Messages of the lost connection are not acknowledged on the next one
                    // (the broker sends them again; their ids make the repeat a no-op).
                    link.generation.fetch_add(1, Ordering::SeqCst);
                }
                subscribed = false;
                metrics.mqtt_connected.set(0);
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "MQTT link down");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// One message from the broker; whether to acknowledge it. Messages refused for good
/// (unknown device, bad payload, over its rate) are acknowledged after being logged and
/// counted. One the host could not store (the database unavailable) is tried again with
/// backoff until it is stored — the acknowledgement waits — or until the link it came on
/// is gone (the broker then sends it again on the next one).
async fn handle(
    platform: &Platform,
    prefix: &str,
    publish: &rumqttc::Publish,
    generation: u64,
) -> Handled {
    let Some((tenant, device, channel)) = parse_topic(prefix, &publish.topic) else {
        tracing::debug!(topic = %publish.topic, "ignored a message on a topic outside the layout");
        return Handled::Done;
    };
    let mut pause = Duration::from_millis(200);
    for attempt in 1.. {
        let outcome = match channel {
            Channel::Ack => platform
                .answer_command(Some(&tenant), &device, &publish.payload)
                .await
                .map(|()| None),
            // A second attempt may follow one whose commit went through unseen: it is
            // matched like a redelivery.
            Channel::Up => platform
                .ingest_message(
                    Some(&tenant),
                    &device,
                    &publish.payload,
                    publish.dup || attempt > 1,
                )
                .await
                .map(Some),
        };
        match outcome {
            Ok(done) => {
                if let Some(done) = done {
                    tracing::debug!(%device, delivered = done.delivered(), duplicate = done.duplicate, "device message stored");
                }
                return Handled::Done;
            }
            // Over the device's rate: dropped (counted), as over HTTP — waiting would let one
            // flooding device hold the broker's in-flight window for everyone. A backlog a
            // device queued while the host was away is within `devices.burst` or partly
            // dropped; size the burst for it.
            Err(PlatformError::TooMany(_)) => {
                tracing::debug!(%device, "device message dropped: rate limit");
                return Handled::Done;
            }
            Err(e @ (PlatformError::Storage(_) | PlatformError::Host(_))) => {
                tracing::warn!(%device, attempt, error = %e, "device message not stored yet; will retry");
                if platform.mqtt.generation.load(Ordering::SeqCst) != generation {
                    return Handled::Gone;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                tracing::info!(%device, %tenant, error = %e, "device message refused");
                return Handled::Done;
            }
        }
    }
    Handled::Gone
}

/// What became of one message from the broker.
enum Handled {
    /// Stored, or refused for good: acknowledge it.
    Done,
    /// Its connection is gone: the broker sends it again.
    Gone,
}

/// `payload` with a message `id` (`sim-<pid>-<n>`) added when it is a JSON object without
/// one, so a simulated device's repeated messages are told apart.
pub fn with_message_id(payload: &str, n: u32) -> String {
    match serde_json::from_str::<serde_json::Value>(payload) {
        Ok(serde_json::Value::Object(mut map)) if !map.contains_key("id") => {
            map.insert(
                "id".into(),
                format!(
                    "sim-{}-{}-{n}",
                    std::process::id(),
                    crate::storage::now_ms()
                )
                .into(),
            );
            serde_json::Value::Object(map).to_string()
        }
        _ => payload.to_owned(),
    }
}

/// How a simulated device answers the commands it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SimAnswer {
    /// Carry it out and acknowledge it.
    Ok,
    /// Refuse it ("simulated refusal").
    Refuse,
    /// Never answer (the sender times out).
    None,
}

/// The answer a simulated device gives to `command` (its wire form), if any.
pub fn sim_answer(how: SimAnswer, command: &serde_json::Value) -> Option<serde_json::Value> {
    let id = command.get("id")?.as_str()?;
    match how {
        SimAnswer::Ok => Some(serde_json::json!({
            "id": id,
            "ok": true,
            "result": { "done": command.get("command").cloned().unwrap_or_default() },
        })),
        SimAnswer::Refuse => Some(serde_json::json!({
            "id": id,
            "ok": false,
            "reason": "模拟拒绝 / simulated refusal",
        })),
        SimAnswer::None => None,
    }
}

/// Play `device` on the broker: listen on its `down` topic, publish each of `payloads` on its
/// `up` topic (QoS 1, each acknowledged by the broker) `interval` apart, and answer the
/// commands that arrive as `answer` says until `listen` has passed after the last message (or
/// one second after the last command). `seen` is called with each command received.
#[allow(clippy::too_many_arguments)]
pub async fn play_device(
    cfg: &DevicesConfig,
    tenant: &str,
    device: &str,
    payloads: Vec<Vec<u8>>,
    interval: Duration,
    listen: Duration,
    answer: SimAnswer,
    mut seen: impl FnMut(&serde_json::Value),
) -> anyhow::Result<()> {
    let client_id = format!("linli-sim-{device}-{}", std::process::id());
    let opts = options(cfg, &client_id)?;
    let (client, mut eventloop) = AsyncClient::new(opts, 16);
    let down = crate::commands::down_topic(&cfg.topic_prefix, tenant, device);
    let ack = format!("{}/{tenant}/{device}/ack", cfg.topic_prefix);
    client.subscribe(&down, QoS::AtLeastOnce).await?;
    let step = |e: Result<Event, rumqttc::ConnectionError>| -> anyhow::Result<Option<Packet>> {
        match e? {
            Event::Incoming(p) => Ok(Some(p)),
            Event::Outgoing(_) => Ok(None),
        }
    };
    // Wait for the subscription before sending, so no command is missed.
    let subscribed = async {
        loop {
            if let Some(Packet::SubAck(_)) = step(eventloop.poll().await)? {
                return anyhow::Ok(());
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), subscribed)
        .await
        .context("the broker did not answer the subscription within 10 s")??;
    let mut handle = |packet: Packet| -> Option<Vec<u8>> {
        let Packet::Publish(p) = packet else {
            return None;
        };
        let command: serde_json::Value = serde_json::from_slice(&p.payload).ok()?;
        seen(&command);
        sim_answer(answer, &command).map(|a| a.to_string().into_bytes())
    };
    for (i, payload) in payloads.into_iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(interval).await;
        }
        client
            .publish(
                up_topic(&cfg.topic_prefix, tenant, device),
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .await?;
        let acked = async {
            loop {
                match step(eventloop.poll().await)? {
                    Some(Packet::PubAck(_)) => return anyhow::Ok(()),
                    Some(packet) => {
                        if let Some(reply) = handle(packet) {
                            client.publish(&ack, QoS::AtLeastOnce, false, reply).await?;
                        }
                    }
                    None => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), acked)
            .await
            .context("the broker did not acknowledge within 10 s")??;
    }
    let listen_end = tokio::time::Instant::now() + listen;
    let mut until = listen_end;
    loop {
        let packet = match tokio::time::timeout_at(until, eventloop.poll()).await {
            Err(_) => break,
            Ok(e) => step(e)?,
        };
        if let Some(packet) = packet {
            let is_command = matches!(&packet, Packet::Publish(_));
            if let Some(reply) = handle(packet) {
                client.publish(&ack, QoS::AtLeastOnce, false, reply).await?;
            }
            if is_command {
                until = listen_end.min(tokio::time::Instant::now() + Duration::from_secs(1));
            }
        }
    }
    // Let the last answers go out before leaving: they are queued before the disconnect.
    let _ = client.disconnect().await;
    let drain = async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_and_addresses() {
        assert_eq!(
            parse_topic("linli", "linli/dongcun/sos-1/up"),
            Some(("dongcun".into(), "sos-1".into(), Channel::Up))
        );
        assert_eq!(
            parse_topic("linli", "linli/dongcun/gate-1/ack"),
            Some(("dongcun".into(), "gate-1".into(), Channel::Ack))
        );
        assert_eq!(parse_topic("linli", "linli/dongcun/sos-1/down"), None);
        assert_eq!(parse_topic("linli", "other/dongcun/sos-1/up"), None);
        assert_eq!(parse_topic("linli", "linli/dongcun/sos-1/up/x"), None);
        assert_eq!(up_topic("linli", "a", "b"), "linli/a/b/up");
        assert_eq!(
            broker_address("mqtt://127.0.0.1:1883").unwrap(),
            ("127.0.0.1".into(), 1883)
        );
        assert_eq!(
            broker_address("mqtt://broker").unwrap(),
            ("broker".into(), 1883)
        );
        assert!(broker_address("http://x").is_err());
        assert!(broker_address("mqtt://:1").is_err());
    }
}
