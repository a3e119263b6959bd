//! The channel contract for every shipped channel, and what only the simulation promises: its failure modes
//! behave as configured.

use chat4all_connectors::simulated::LatencyRange;
use chat4all_connectors::{Fault, SimulatedChannel, SimulationSettings, instagram, whatsapp};
use chat4all_core::contract::channel::{self, Addresses};
use chat4all_core::events::OutboundMessage;
use chat4all_core::ids::{ConversationId, MessageId, UserId};
use chat4all_core::ports::{Channel, ChannelError};
use std::sync::Arc;
use std::time::Duration;

/// Answers within 2 ms and fails `failure_rate` of the calls.
fn settings(failure_rate: f64) -> SimulationSettings {
    SimulationSettings::new(
        LatencyRange {
            min_ms: 0,
            max_ms: 2,
        },
        failure_rate,
    )
    .unwrap()
}

#[tokio::test]
async fn whatsapp_meets_the_channel_contract() {
    let addresses = Addresses {
        valid: "+5511999990000",
        invalid: "5511999",
    };
    channel::run_all(Arc::new(whatsapp::channel(settings(0.0))), addresses).await;
}

#[tokio::test]
async fn instagram_meets_the_channel_contract() {
    let addresses = Addresses {
        valid: "@maria.s",
        invalid: "maria",
    };
    channel::run_all(Arc::new(instagram::channel(settings(0.0))), addresses).await;
}

fn to_whatsapp() -> OutboundMessage {
    OutboundMessage {
        message_id: MessageId::generate(),
        conversation_id: ConversationId::generate(),
        seq: 1,
        sender_id: UserId::generate(),
        channel: whatsapp::NAME.into(),
        address: "+5511999990000".into(),
        content: "hi".into(),
        file: None,
        timestamp: 0,
        expires_at: None,
    }
}

/// How many of `calls` sends fail, checking that every failure is retryable.
async fn retryable_failures(channel: &SimulatedChannel, calls: usize) -> usize {
    let mut failures = 0;
    for _ in 0..calls {
        if let Err(e) = channel.send(&to_whatsapp()).await {
            assert!(
                matches!(e, ChannelError::Unavailable(_)) && e.is_retryable(),
                "a simulated failure is a retryable outage, got {e}"
            );
            failures += 1;
        }
    }
    failures
}

#[tokio::test]
async fn the_configured_failure_rate_is_applied() {
    let always = whatsapp::channel(settings(1.0));
    assert_eq!(
        retryable_failures(&always, 50).await,
        50,
        "a failure rate of 1 fails every call"
    );
    // 200 calls at 0.5: all or none failing has a probability of 2^-199.
    let half = retryable_failures(&whatsapp::channel(settings(0.5)), 200).await;
    assert!(
        (1..200).contains(&half),
        "a failure rate of 0.5 fails some calls, not all: {half} of 200"
    );
}

#[tokio::test]
async fn injected_faults_apply_until_cleared() {
    let channel = whatsapp::channel(settings(0.0));
    let faults = channel.faults();
    faults.set(Some(Fault::Down), Duration::from_secs(3600));
    assert_eq!(
        retryable_failures(&channel, 10).await,
        10,
        "a channel that is down fails every call"
    );
    faults.set(
        Some(Fault::Flaky { failure_rate: 1.0 }),
        Duration::from_secs(3600),
    );
    assert_eq!(retryable_failures(&channel, 10).await, 10);
    faults.set(None, Duration::ZERO);
    assert_eq!(
        retryable_failures(&channel, 10).await,
        0,
        "clearing the fault restores the configured behaviour"
    );
}

#[tokio::test(start_paused = true)]
async fn a_slow_fault_adds_its_latency() {
    let channel = whatsapp::channel(settings(0.0));
    channel.faults().set(
        Some(Fault::Slow {
            extra: Duration::from_secs(5),
        }),
        Duration::from_secs(3600),
    );
    let started = tokio::time::Instant::now();
    channel
        .send(&to_whatsapp())
        .await
        .expect("slow, not failing");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(5) && took <= Duration::from_millis(5002),
        "the answer comes after the configured latency plus the extra: {took:?}"
    );
}

#[tokio::test]
async fn an_outage_wins_over_a_bad_address() {
    let channel = whatsapp::channel(settings(1.0));
    let mut message = to_whatsapp();
    message.address = "not a number".into();
    let outcome = channel.send(&message).await;
    assert!(
        matches!(outcome, Err(ChannelError::Unavailable(_))),
        "a provider that is down cannot judge the address: {outcome:?}"
    );
}
