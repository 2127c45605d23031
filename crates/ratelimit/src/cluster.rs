//! The cluster tier: GCRA in Redis, one Lua script per decision.

use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script};

use gateway_core::{PartnerId, Route};

use crate::local::Counted;
use crate::{Limit, LimiterSettings, Outcome};

/// The GCRA decision, run atomically inside Redis.
///
/// - `KEYS[1]`: the (partner, route) key, see [`cluster_key`].
/// - `ARGV[1]`: the emission interval in microseconds (`1e6 / rate`, rounded up).
/// - `ARGV[2]`: the burst.
///
/// The state is the key's "theoretical arrival time" in microseconds of the Redis server's clock
/// (`TIME`), so the gateways' clocks never matter and every instance sees one timeline. Redis
/// 5 and later replicate scripts by their effects, which is what allows a write after `TIME`;
/// Redis 7 (the one we test against) only replicates effects. Time is kept in whole microseconds
/// since the epoch (~1.8e15), well inside the 2^53 a Lua number holds exactly.
///
/// A refusal writes nothing. An admission stores the new arrival time with a TTL of exactly the
/// time until the bucket is full again: an expired key and a full bucket are the same state.
///
/// Returns `{allowed, remaining, retry_after_us, reset_after_us}`.
pub const GCRA_SCRIPT: &str = r#"
local emission = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = now
local stored = redis.call('GET', KEYS[1])
if stored then
  tat = math.max(tonumber(stored), now)
end
local new_tat = tat + emission
local allow_at = new_tat - emission * burst
if now < allow_at then
  return {0, 0, allow_at - now, tat - now}
end
local reset = new_tat - now
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil(reset / 1000))
return {1, math.floor((emission * burst - reset) / emission), 0, reset}
"#;

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(GCRA_SCRIPT));

/// The Redis key of a (partner, route) pair: `{pgw:rl:<partner>}:<route>`.
///
/// The hash tag keeps all of a partner's keys in one Redis Cluster slot. Partner ids are slugs
/// and route names are fixed, so neither can contain `{` or `}`.
pub fn cluster_key(partner: &PartnerId, route: Route) -> String {
    format!("{{pgw:rl:{partner}}}:{}", route.name())
}

/// Why a Redis decision failed. The decision itself then follows the outage policy; the error
/// goes to the log and the metrics.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Redis did not answer within the configured timeout.
    #[error("Redis did not answer within {after:?}")]
    Timeout {
        /// The timeout that expired.
        after: Duration,
    },
    /// The connection or the command failed.
    #[error("Redis call failed: {0}")]
    Redis(#[from] RedisError),
    /// The script answered something other than four integers.
    #[error("unexpected reply from the rate-limit script: {reply}")]
    Reply {
        /// The reply, as debug text.
        reply: String,
    },
}

/// A connection to Redis for rate-limit decisions, configured for the outage policy.
///
/// The connection is lazy: nothing is sent until the first decision, so a gateway starts while
/// Redis is down (decisions follow the outage policy until it is up). Reconnection attempts are
/// short and frequent, so a restarted Redis is found by the breaker's next probe. Must be called
/// inside a tokio runtime. For Redis Cluster, pass a `redis::cluster_async::ClusterConnection` to
/// [`Limiter::cluster`](crate::Limiter::cluster) instead.
pub fn redis_connection(
    url: &str,
    settings: &LimiterSettings,
) -> Result<ConnectionManager, ClusterError> {
    let client = redis::Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        // Our own timeout bounds every decision; the manager's would only race it.
        .set_response_timeout(None)
        .set_connection_timeout(Some(settings.redis_timeout.max(Duration::from_millis(100))))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(10))
        .set_max_delay(Duration::from_millis(100));
    Ok(ConnectionManager::new_lazy_with_config(client, config)?)
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Object-safe access to any async Redis connection that can be cloned per call
/// (`ConnectionManager`, `MultiplexedConnection`, `ClusterConnection`).
pub(crate) trait Eval: Send + Sync + 'static {
    fn gcra(
        &self,
        key: String,
        emission_us: u64,
        burst: u32,
    ) -> BoxFuture<redis::RedisResult<Vec<i64>>>;
}

struct Connection<T>(T);

impl<T> Eval for Connection<T>
where
    T: ConnectionLike + Clone + Send + Sync + 'static,
{
    fn gcra(
        &self,
        key: String,
        emission_us: u64,
        burst: u32,
    ) -> BoxFuture<redis::RedisResult<Vec<i64>>> {
        // Connections are handles to one shared multiplexed socket; cloning is a refcount.
        let mut connection = self.0.clone();
        Box::pin(async move {
            // EVALSHA; on NOSCRIPT (a restarted Redis) the script is loaded and retried once.
            SCRIPT
                .key(key)
                .arg(emission_us)
                .arg(burst)
                .invoke_async(&mut connection)
                .await
        })
    }
}

/// Most extra timeout periods one decision may wait while Redis keeps answering other
/// decisions (see [`ClusterTier::check`]).
const MAX_EXTENSIONS: u32 = 4;

/// The Redis side of the limiter.
pub(crate) struct ClusterTier {
    connection: Box<dyn Eval>,
    timeout: Duration,
    /// When the tier was created: the origin of `last_reply`.
    origin: Instant,
    /// When a decision last got its reply, in nanoseconds since `origin`.
    last_reply: AtomicU64,
}

impl ClusterTier {
    pub(crate) fn new<T>(connection: T, timeout: Duration) -> Self
    where
        T: ConnectionLike + Clone + Send + Sync + 'static,
    {
        ClusterTier {
            connection: Box::new(Connection(connection)),
            timeout,
            origin: Instant::now(),
            last_reply: AtomicU64::new(0),
        }
    }

    #[cfg(test)]
    fn with_eval(connection: Box<dyn Eval>, timeout: Duration) -> Self {
        ClusterTier {
            connection,
            timeout,
            origin: Instant::now(),
            last_reply: AtomicU64::new(0),
        }
    }

    /// One decision: one round trip, bounded by the timeout.
    ///
    /// The timeout is there to notice a dead or stalled Redis, not a busy gateway. On a
    /// saturated gateway the command is written, and the reply read, by the connection's task
    /// in the same run queue as everything else, so a decision can pass its timeout while Redis
    /// answered in microseconds. So when the timeout passes, the decision yields once (the
    /// runtime polls its I/O driver and runs the tasks queued ahead, the connection's reader
    /// among them) and takes the reply if it is there; and while *other* decisions received
    /// their replies during the last period — Redis is answering, the delay is ours — it waits
    /// one more period, at most [`MAX_EXTENSIONS`] times. A Redis that answers nobody costs
    /// exactly one timeout.
    pub(crate) async fn check(
        &self,
        partner: &PartnerId,
        route: Route,
        limit: Limit,
    ) -> Result<Counted, ClusterError> {
        let emission_us = 1_000_000u64.div_ceil(u64::from(limit.rate_per_sec.get()));
        let call =
            self.connection
                .gcra(cluster_key(partner, route), emission_us, limit.burst.get());
        let mut call = std::pin::pin!(call);
        let mut period_start = self.now_nanos();
        let mut extensions = 0;
        let reply = loop {
            if let Ok(reply) = tokio::time::timeout(self.timeout, call.as_mut()).await {
                break reply;
            }
            tokio::task::yield_now().await;
            if let Ok(reply) = tokio::time::timeout(Duration::ZERO, call.as_mut()).await {
                break reply;
            }
            let answering = self.last_reply.load(Ordering::Relaxed) > period_start;
            if !answering || extensions == MAX_EXTENSIONS {
                return Err(ClusterError::Timeout {
                    after: self.timeout,
                });
            }
            extensions += 1;
            period_start = self.now_nanos();
        }?;
        self.last_reply
            .fetch_max(self.now_nanos(), Ordering::Relaxed);
        parse(&reply)
    }

    fn now_nanos(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

fn parse(reply: &[i64]) -> Result<Counted, ClusterError> {
    let &[allowed, remaining, retry_us, reset_us] = reply else {
        return Err(ClusterError::Reply {
            reply: format!("{reply:?}"),
        });
    };
    let micros = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
    let outcome = match allowed {
        1 => Outcome::Allow,
        0 => Outcome::Deny,
        _ => {
            return Err(ClusterError::Reply {
                reply: format!("{reply:?}"),
            });
        }
    };
    Ok(Counted {
        outcome,
        remaining: u32::try_from(remaining).unwrap_or(0),
        reset_after: micros(reset_us),
        retry_after: (outcome == Outcome::Deny).then(|| micros(retry_us)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_cluster_connections_fit_the_cluster_tier() {
        fn fits<T: ConnectionLike + Clone + Send + Sync + 'static>() {}
        fits::<redis::cluster_async::ClusterConnection>();
        fits::<ConnectionManager>();
        fits::<redis::aio::MultiplexedConnection>();
    }

    #[test]
    fn keys_carry_a_hash_tag_per_partner() {
        let p = PartnerId::parse("demo-bank").unwrap();
        assert_eq!(
            cluster_key(&p, Route::CustomerTags),
            "{pgw:rl:demo-bank}:customer_tags"
        );
    }

    #[test]
    fn replies_parse_or_fail_exactly() {
        let allowed = parse(&[1, 4, 0, 200_000]).unwrap();
        assert_eq!(allowed.outcome, Outcome::Allow);
        assert_eq!((allowed.remaining, allowed.retry_after), (4, None));
        assert_eq!(allowed.reset_after, Duration::from_millis(200));
        let denied = parse(&[0, 0, 1500, 900_000]).unwrap();
        assert_eq!(denied.retry_after, Some(Duration::from_micros(1500)));
        for bad in [&[1, 2, 3][..], &[2, 0, 0, 0], &[]] {
            assert!(
                matches!(parse(bad), Err(ClusterError::Reply { .. })),
                "{bad:?}"
            );
        }
    }

    /// Answers each key after its own delay (`None`: never), on tokio's paused clock. Only for
    /// the timing policy of [`ClusterTier::check`]; Redis itself is tested for real in
    /// `tests/cluster.rs`.
    struct Delayed(std::collections::HashMap<String, Option<Duration>>);

    impl Eval for Delayed {
        fn gcra(&self, key: String, _: u64, _: u32) -> BoxFuture<redis::RedisResult<Vec<i64>>> {
            let delay = self.0.get(&key).copied().flatten();
            Box::pin(async move {
                match delay {
                    Some(delay) => tokio::time::sleep(delay).await,
                    None => std::future::pending::<()>().await,
                }
                Ok(vec![1, 9, 0, 1000])
            })
        }
    }

    const TIMEOUT: Duration = Duration::from_millis(20);

    fn tier(delays: &[(&str, Option<Duration>)]) -> std::sync::Arc<ClusterTier> {
        let delays = delays
            .iter()
            .map(|(p, d)| {
                let key = cluster_key(&PartnerId::parse(p).unwrap(), Route::Products);
                (key, *d)
            })
            .collect();
        std::sync::Arc::new(ClusterTier::with_eval(Box::new(Delayed(delays)), TIMEOUT))
    }

    async fn decide(
        tier: &ClusterTier,
        partner: &str,
    ) -> (Result<Counted, ClusterError>, Duration) {
        let limit = Limit::new(
            std::num::NonZeroU32::new(10).unwrap(),
            std::num::NonZeroU32::new(10).unwrap(),
        );
        let started = Instant::now();
        let result = tier
            .check(&PartnerId::parse(partner).unwrap(), Route::Products, limit)
            .await;
        (result, started.elapsed())
    }

    /// Decisions for `partner` one after another, each answered after `every`, until `stop`.
    async fn steady_replies(
        tier: std::sync::Arc<ClusterTier>,
        partner: &'static str,
        stop: Duration,
    ) {
        let started = Instant::now();
        while started.elapsed() < stop {
            decide(&tier, partner).await.0.unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_redis_that_answers_nobody_costs_exactly_one_timeout() {
        let tier = tier(&[("bank-a", None)]);
        let (result, took) = decide(&tier, "bank-a").await;
        assert!(
            matches!(result, Err(ClusterError::Timeout { .. })),
            "{result:?}"
        );
        assert_eq!(took, TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_reply_is_waited_for_while_redis_answers_others() {
        // bank-a's reply takes three timeouts (its command sat in a saturated run queue);
        // meanwhile bank-b's decisions are answered every 5 ms.
        let tier = tier(&[
            ("bank-a", Some(TIMEOUT * 3)),
            ("bank-b", Some(Duration::from_millis(5))),
        ]);
        let others = tokio::spawn(steady_replies(tier.clone(), "bank-b", TIMEOUT * 10));
        tokio::task::yield_now().await;
        let (result, took) = decide(&tier, "bank-a").await;
        assert_eq!(result.unwrap().remaining, 9);
        assert_eq!(took, TIMEOUT * 3);
        others.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_a_reply_is_bounded_even_while_redis_answers_others() {
        let tier = tier(&[("bank-a", None), ("bank-b", Some(Duration::from_millis(5)))]);
        let others = tokio::spawn(steady_replies(tier.clone(), "bank-b", TIMEOUT * 10));
        tokio::task::yield_now().await;
        let (result, took) = decide(&tier, "bank-a").await;
        assert!(
            matches!(result, Err(ClusterError::Timeout { .. })),
            "{result:?}"
        );
        assert_eq!(took, TIMEOUT * (MAX_EXTENSIONS + 1));
        others.await.unwrap();
    }
}
