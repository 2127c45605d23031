//! The Lua scripts behind every multi-key update. Each one touches only keys of one hash tag
//! (declared in `KEYS`), so it runs atomically on one node, standalone or Cluster.
//!
//! Scripts that change consents or tokens also `PUBLISH` the change, in the same atomic step,
//! as `"<epoch> <kind> [<payload>]"` where `kind` is `consent` (payload: the record JSON),
//! `token` (payload: the jti) or `noop` (the epoch was taken but nothing changed). The epoch is
//! taken by a separate `INCR` before the script because the epoch key lives in its own slot.

use std::sync::LazyLock;

use ::redis::Script;

/// Stores a grant unless its id exists or an unexpired active grant holds
/// (customer, partner, purpose).
///
/// KEYS: consents, revoked, meta, active, order (all `{c:<customer>}`).
/// ARGV: id, `partner|purpose`, record JSON, granted_at, expires_at, revoked_at or "",
/// channel, epoch.
/// Returns `{"granted"}`, `{"exists", record, revoked_at?}` or `{"active", record}`.
pub(crate) static GRANT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then
  redis.call('PUBLISH', ARGV[7], ARGV[8] .. ' noop')
  return {'exists', existing, redis.call('HGET', KEYS[2], ARGV[1])}
end
local current = redis.call('HGET', KEYS[4], ARGV[2])
if current and not redis.call('HGET', KEYS[2], current) then
  local meta = redis.call('HGET', KEYS[3], current)
  local exp = meta and tonumber(string.match(meta, '^(%-?%d+) '))
  if exp and exp > tonumber(ARGV[4]) then
    redis.call('PUBLISH', ARGV[7], ARGV[8] .. ' noop')
    return {'active', redis.call('HGET', KEYS[1], current)}
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[5] .. ' ' .. ARGV[2])
redis.call('RPUSH', KEYS[5], ARGV[1])
if ARGV[6] == '' then
  redis.call('HSET', KEYS[4], ARGV[2], ARGV[1])
else
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[6])
end
redis.call('PUBLISH', ARGV[7], ARGV[8] .. ' consent ' .. ARGV[3])
return {'granted'}
",
    )
});

/// Marks a consent revoked and frees its active-grant slot.
///
/// KEYS: consents, revoked, meta, active (all `{c:<customer>}`).
/// ARGV: id, now, channel, epoch.
/// Returns `{"missing"}`, `{"already", record, revoked_at}` or `{"revoked", record}`.
pub(crate) static REVOKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local rec = redis.call('HGET', KEYS[1], ARGV[1])
if not rec then
  redis.call('PUBLISH', ARGV[3], ARGV[4] .. ' noop')
  return {'missing'}
end
local at = redis.call('HGET', KEYS[2], ARGV[1])
if at then
  -- Published again: a retried revoke whose first answer was lost must still reach caches.
  redis.call('PUBLISH', ARGV[3], ARGV[4] .. ' consent ' .. rec)
  return {'already', rec, at}
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local meta = redis.call('HGET', KEYS[3], ARGV[1])
if meta then
  local field = string.match(meta, '^%-?%d+ (.*)$')
  if field and redis.call('HGET', KEYS[4], field) == ARGV[1] then
    redis.call('HDEL', KEYS[4], field)
  end
end
redis.call('PUBLISH', ARGV[3], ARGV[4] .. ' consent ' .. rec)
return {'revoked', rec}
",
    )
});

/// Records a revoked token id, keeping the longest expiry.
///
/// KEYS: the token key. ARGV: ttl seconds, channel, epoch, jti.
pub(crate) static REVOKE_TOKEN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local ttl = tonumber(ARGV[1])
if redis.call('TTL', KEYS[1]) < ttl then
  redis.call('SET', KEYS[1], '1', 'EX', ttl)
end
redis.call('PUBLISH', ARGV[2], ARGV[3] .. ' token ' .. ARGV[4])
return 1
",
    )
});

/// Claims an idempotency key. A claim whose `exp` (by the caller's clock) has passed counts as
/// absent; Redis's own expiry only collects garbage.
///
/// KEYS: the key's hash. ARGV: fingerprint (32 raw bytes), now, ttl seconds, now + ttl.
/// Returns `{"new"}`, `{"mismatch"}`, `{"progress"}` or `{"replay", status, body}`.
pub(crate) static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local h = redis.call('HMGET', KEYS[1], 'fp', 'exp', 'status', 'body')
if h[1] and tonumber(h[2]) > tonumber(ARGV[2]) then
  if h[1] ~= ARGV[1] then return {'mismatch'} end
  if h[3] then return {'replay', h[3], h[4]} end
  return {'progress'}
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'at', ARGV[2], 'exp', ARGV[4])
redis.call('EXPIRE', KEYS[1], math.max(1, tonumber(ARGV[3])))
return {'new'}
",
    )
});

/// Stores the response of a claimed key (nothing when the claim is gone).
///
/// KEYS: the key's hash. ARGV: status, body.
pub(crate) static COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'body', ARGV[2])
return 1
",
    )
});

/// Releases a claim that has no response yet.
///
/// KEYS: the key's hash.
pub(crate) static ABANDON: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HEXISTS', KEYS[1], 'status') == 1 then return 0 end
return redis.call('DEL', KEYS[1])
",
    )
});

/// Issues a code under the partner's daily cap.
///
/// KEYS: code, day counter, stats (all `{p:<campaign>:<partner>}`).
/// ARGV: record JSON, daily cap, day counter ttl.
/// Returns `{"issued", n}`, `{"cap"}` or `{"duplicate"}` (the code holds another record).
pub(crate) static ISSUE_CODE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local existing = redis.call('GET', KEYS[1])
if existing then
  if existing == ARGV[1] then
    return {'issued', tonumber(redis.call('GET', KEYS[2]) or '0')}
  end
  return {'duplicate'}
end
local n = tonumber(redis.call('GET', KEYS[2]) or '0')
if n >= tonumber(ARGV[2]) then return {'cap'} end
n = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HINCRBY', KEYS[3], 'codes', 1)
return {'issued', n}
",
    )
});

/// Counts an event once, under the code's cap.
///
/// KEYS: event, code, conversions by type, conversions total, stats
/// (all `{p:<campaign>:<partner>}`).
/// ARGV: event JSON, cap, event type, currency, reward.
/// Returns `{"counted", n}`, `{"replay", event JSON}`, `{"cap"}` or `{"unknown"}`.
pub(crate) static RECORD_EVENT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local first = redis.call('GET', KEYS[1])
if first then return {'replay', first} end
if redis.call('EXISTS', KEYS[2]) == 0 then return {'unknown'} end
local n = tonumber(redis.call('GET', KEYS[4]) or '0')
if n >= tonumber(ARGV[2]) then return {'cap'} end
n = redis.call('INCR', KEYS[4])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
redis.call('HINCRBY', KEYS[5], 'conv:' .. ARGV[3], 1)
redis.call('HINCRBY', KEYS[5], 'reward:' .. ARGV[4], ARGV[5])
return {'counted', n}
",
    )
});

/// Deletes a key only while it still holds the value we wrote (undoing our own claim).
///
/// KEYS: the key. ARGV: the value.
pub(crate) static DELETE_IF: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
",
    )
});
