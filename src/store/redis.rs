//! The Redis store: durable, shared by every replica.
//!
//! Two [`ConnectionManager`]s (each a single multiplexed socket that reconnects in the
//! background) carry all traffic but the event feed's blocking reads (a third connection,
//! see [`Store::wait_events`]), one for writes and one for reads, so a replica holds three
//! Redis connections however loaded it is, and a large series read does not queue ahead of
//! report batches on the same socket; the read connection is driven on a thread of its own
//! (see [`ReadThread`]), so parsing a large reply does not delay theirs either. Every call
//! is bounded by a timeout: during a Redis outage the manager makes callers wait for its
//! reconnect, and a caller must get a 503 within two seconds instead.
//!
//! Writes run two Lua scripts, one call per service per batch (all keys of a call share the
//! service's hash tag): `RECORD` checks revocations and the dedup marker and counts the report
//! atomically; `REVOKE` marks reports revoked and undoes a count that a revoked report made.
//! Scripts are sent by hash (`EVALSHA`); a Redis that lost its script cache (a restart) answers
//! `NOSCRIPT` to the whole pipeline, having run none of it, and the pipeline is sent again
//! after `SCRIPT LOAD`.
//!
//! The detector's writes are scripts too, on the write connection: `LEASE` and `RELEASE` take,
//! renew and give up the leader lease; `COMMIT` writes one detector step (cursor, states,
//! events, incident records) atomically, fenced by the lease. A step that saves many states
//! (a warm-up's, a new leader's first) sends them ahead in chunks to staged keys, which its
//! `COMMIT` renames into place. Its keys span services, so it needs a single Redis instance
//! (see [`keys`]). A commit that times out may or may not have been applied; the detector
//! reloads its state before trying again.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{Script, Value};

use super::{
    BucketCounts, Cell, CellFilter, DetectorCommit, DetectorSnapshot, Granularity, HistoryAdded,
    HistoryCount, IncidentQuery, IncidentRecord, Recorded, Report, SavedState, Store, StoreError,
    StoreSettings, StreamBounds, StreamEvent, StreamId, StreamRead, encode_json, incident_service,
    keys, lease_millis, parse_incident_id, parse_json, parse_stream_id, to_json, whole_secs,
};
use crate::buckets::ROLLUP_SECS;
use crate::catalog::{Problem, ServiceId};
use crate::detector::{GapDecision, Incident, IncidentStatus};
use crate::regions::RegionCode;

/// Records the reports of one service. KEYS[1] to KEYS[3] are the service's revocation
/// hashes of the previous, the current and the next period (a write may be delayed past a
/// period boundary, after its revocation); then, for each of the B bucket pairs the reports
/// fall in, its fine bucket and hourly roll-up; then per report its dedup marker and, with a
/// reporter limit per address, its address counter. ARGV[1] is the dedup window in
/// milliseconds, ARGV[2] the most reporters per address (0 for no limit), ARGV[3] B; then per
/// bucket pair the expire-at of the fine bucket and of the roll-up; then per report its
/// token, its field and the number (1 to B) of its bucket pair. Returns per report 1 counted,
/// 0 duplicate, 2 capped, -1 revoked. A report whose marker holds its own token was counted
/// by an earlier call (a pipeline re-sent after `NOSCRIPT`): 1 again, and nothing added.
///
/// Revocations are rare, so the revocation hashes usually do not exist and three `EXISTS`
/// per call replace a lookup per report. The reports of one call nearly always share their
/// buckets, so each bucket is named, and its expiry set, once per call; and the counts of one
/// cell are added in one `HINCRBY` (an outage's reports crowd into a few cells).
const RECORD_LUA: &str = r"
local window, cap, pairs_n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local revoked = {}
for _, key in ipairs({KEYS[1], KEYS[2], KEYS[3]}) do
  if redis.call('EXISTS', key) == 1 then table.insert(revoked, key) end
end
local per = (cap > 0) and 2 or 1
local first_key, first_arg = 3 + 2 * pairs_n, 3 + 2 * pairs_n
local out, counts = {}, {}
for i = 1, (#KEYS - first_key) / per do
  local seen, addr = KEYS[first_key + per * (i - 1) + 1], KEYS[first_key + per * i]
  local a = first_arg + 3 * (i - 1)
  local token = ARGV[a + 1]
  local is_revoked = false
  for _, key in ipairs(revoked) do
    if redis.call('HEXISTS', key, token) == 1 then is_revoked = true end
  end
  local counted = false
  if is_revoked then
    out[i] = -1
  elseif cap == 0 then
    counted = redis.call('SET', seen, token, 'NX', 'PX', window)
    if counted or redis.call('GET', seen) == token then out[i] = 1 else out[i] = 0 end
  else
    local holder = redis.call('GET', seen)
    if holder then
      if holder == token then out[i] = 1 else out[i] = 0 end
    elseif tonumber(redis.call('GET', addr) or '0') >= cap then
      out[i] = 2
    else
      redis.call('SET', seen, token, 'PX', window)
      if redis.call('INCR', addr) == 1 then redis.call('PEXPIRE', addr, window) end
      counted = true
      out[i] = 1
    end
  end
  if counted then
    local pair, field = tonumber(ARGV[a + 3]), ARGV[a + 2]
    local fields = counts[pair]
    if not fields then fields = {}; counts[pair] = fields end
    fields[field] = (fields[field] or 0) + 1
  end
end
for pair, fields in pairs(counts) do
  local fine, hourly = KEYS[2 + 2 * pair], KEYS[3 + 2 * pair]
  for field, n in pairs(fields) do
    redis.call('HINCRBY', fine, field, n)
    if hourly ~= fine then redis.call('HINCRBY', hourly, field, n) end
  end
  redis.call('EXPIREAT', fine, ARGV[2 + 2 * pair])
  if hourly ~= fine then redis.call('EXPIREAT', hourly, ARGV[3 + 2 * pair]) end
end
return out
";

/// Revokes reports of one service. KEYS[1] is the service's revocation hash of the current
/// period, KEYS[2] its generation counter (moved for each count undone); per report i: KEYS
/// seen, address, fine bucket, hourly bucket; ARGV token, field
/// (after ARGV[1], the lifetime of the revocation hash in milliseconds: two periods, so a
/// token is remembered for at least one whole period; and ARGV[2], the reporter limit per
/// address, 0 for none).
const REVOKE_LUA: &str = r"
local cap = tonumber(ARGV[2])
for i = 1, (#KEYS - 2) / 4 do
  local k, a = 4 * (i - 1) + 2, 2 * (i - 1) + 2
  local seen, addr, fine, hourly = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4]
  local token, field = ARGV[a + 1], ARGV[a + 2]
  redis.call('HSET', KEYS[1], token, 1)
  if redis.call('GET', seen) == token then
    redis.call('DEL', seen)
    if cap > 0 and redis.call('DECR', addr) <= 0 then redis.call('DEL', addr) end
    if redis.call('HINCRBY', fine, field, -1) <= 0 then redis.call('HDEL', fine, field) end
    if hourly ~= fine then
      if redis.call('HINCRBY', hourly, field, -1) <= 0 then redis.call('HDEL', hourly, field) end
    end
    redis.call('INCR', KEYS[2])
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 0
";

/// Takes or renews the detector lease. KEYS[1] the lease, KEYS[2] the width of the buckets
/// its holder detects on; ARGV[1] the holder, ARGV[2] the time to live in milliseconds,
/// ARGV[3] the holder's bucket width in seconds, written with the lease and expiring with it.
/// Returns 1 when the holder has the lease, 0 when another does.
const LEASE_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
elseif not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 0
end
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])
return 1
";

/// Gives the detector lease up. KEYS[1] the lease; ARGV[1] the holder. Deletes the lease only
/// when the holder has it.
const RELEASE_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Writes one detector step, only while ARGV[1] holds the lease and the saved cursor is the
/// one the step continues from (else returns 0 having written nothing). KEYS[1..8]: lease,
/// cursor, service set, event stream, all incidents, open incidents, saved cursors, gap
/// decisions; then per state saved its state key and, when the states were staged, its
/// staged key; then per event: incident record, incident event list, the service's incident
/// index; then the state key of each service to forget. ARGV[2] the cursor, ARGV[3] the
/// event retention in ms, ARGV[4] the incident retention in seconds, ARGV[5] the number of
/// states, ARGV[6] 1 when they were staged (sent ahead, see `RedisStore::stage_states`) else
/// 0, ARGV[7] the gap decisions (`encode_gaps`; '' for none), ARGV[8] the number of records
/// refreshed; then per state: service id, blob ('' when staged), its `dr:detector:saved`
/// entry (see `saved_entry`); then per event: event JSON, incident JSON, incident id, start,
/// record expire-at, 1 if the incident is resolved else 0; then per record refreshed (its
/// key after the events' keys): incident JSON and id; then the id of each service to forget;
/// then the cursor continued from ('' for none) and the number of services to forget.
/// Returns the stream ids of the events, in order. A staged state that is gone (expired)
/// fails the call with an error before anything is written. A refreshed record is written
/// only while it is open and exists (`XX`), keeping its expiry.
///
/// Redis's own clock (`TIME`) trims the stream, as it also makes the `XADD *` ids; the
/// incident indexes are trimmed to the same horizon at which their records expire.
const COMMIT_LUA: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if (redis.call('GET', KEYS[2]) or '') ~= ARGV[#ARGV - 1] then return 0 end
local keep_ms, keep_s, n = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local staged, forget, refreshed = ARGV[6] == '1', tonumber(ARGV[#ARGV]), tonumber(ARGV[8])
local per = staged and 2 or 1
if staged then
  for i = 1, n do
    if redis.call('EXISTS', KEYS[8 + 2 * i]) == 0 then
      return redis.error_reply('a staged detector state is missing')
    end
  end
end
local time = redis.call('TIME')
local now_s = tonumber(time[1])
local now_ms = now_s * 1000 + math.floor(tonumber(time[2]) / 1000)
local min_id = string.format('%.0f', math.max(0, now_ms - keep_ms))
local oldest = string.format('%.0f', now_s - keep_s)
redis.call('SET', KEYS[2], ARGV[2])
if ARGV[7] == '' then
  redis.call('DEL', KEYS[8])
else
  redis.call('SET', KEYS[8], ARGV[7])
end
for i = 1, n do
  local key, a = KEYS[9 + per * (i - 1)], 8 + 3 * (i - 1)
  local service = ARGV[a + 1]
  redis.call('SADD', KEYS[3], service)
  if staged then
    redis.call('RENAME', KEYS[8 + 2 * i], key)
    redis.call('PERSIST', key)
  else
    redis.call('SET', key, ARGV[a + 2])
  end
  redis.call('HSET', KEYS[7], service, ARGV[a + 3])
end
for i = 1, forget do
  local service = ARGV[#ARGV - 1 - i]
  redis.call('SREM', KEYS[3], service)
  redis.call('HDEL', KEYS[7], service)
  redis.call('DEL', KEYS[#KEYS + 1 - i])
end
local ids = {}
local events = (#KEYS - 8 - per * n - refreshed - forget) / 3
for i = 1, events do
  local k, a = 8 + per * n + 3 * (i - 1), 8 + 3 * n + 6 * (i - 1)
  local record, list, by_service = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  local event, incident, id = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local start, expires = ARGV[a + 4], ARGV[a + 5]
  ids[i] = redis.call('XADD', KEYS[4], 'MINID', '~', min_id, '*', 'event', event)
  redis.call('SET', record, incident)
  redis.call('RPUSH', list, event)
  redis.call('EXPIREAT', record, expires)
  redis.call('EXPIREAT', list, expires)
  redis.call('ZADD', KEYS[5], start, id)
  redis.call('ZADD', by_service, start, id)
  redis.call('EXPIREAT', by_service, expires, 'NX')
  redis.call('EXPIREAT', by_service, expires, 'GT')
  redis.call('ZREMRANGEBYSCORE', by_service, '-inf', oldest)
  if ARGV[a + 6] == '1' then
    redis.call('ZREM', KEYS[6], id)
  else
    redis.call('ZADD', KEYS[6], start, id)
  end
end
for i = 1, refreshed do
  local record, a = KEYS[8 + per * n + 3 * events + i], 8 + 3 * n + 6 * events + 2 * (i - 1)
  if redis.call('ZSCORE', KEYS[6], ARGV[a + 2]) then
    redis.call('SET', record, ARGV[a + 1], 'XX', 'KEEPTTL')
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', oldest)
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', oldest)
return ids
";

/// A commit whose states are larger than this in all sends them ahead, in chunks of about
/// [`STAGE_CHUNK_BYTES`] (see `RedisStore::stage_states`); a smaller one carries them in its
/// script call.
const STAGE_FROM_BYTES: usize = 256 * 1024;

/// Most state bytes sent in one call ahead of a commit (the last state may pass it).
const STAGE_CHUNK_BYTES: usize = 512 * 1024;

/// How long a staged state lives when no commit renames it (its leader died, lost the
/// lease or failed to commit).
const STAGED_TTL: Duration = Duration::from_secs(300);

/// Longest any single Redis call may take before the caller gets [`StoreError::Timeout`].
pub const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a ping that timed out waits for a fresh connection to say why (see
/// `RedisStore::why_unanswered`).
const PROBE_TIMEOUT: Duration = Duration::from_millis(250);

/// The oldest Redis downradar runs on (major, minor): its scripts use `EXPIREAT … NX` and
/// `GT`, new in 7.0. On an older one the detector could never commit.
const MIN_REDIS_VERSION: (u32, u32) = (7, 0);

/// Why the server of an `INFO server` reply cannot serve downradar: its `redis_version` is
/// older than [`MIN_REDIS_VERSION`], or it runs as a Cluster node or a Sentinel. `None` when
/// it can, or does not say (a server that speaks the protocol under another name is given
/// the benefit of the doubt).
fn unsupported(info: &str) -> Option<String> {
    let field = |name: &str| {
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    match field("redis_mode") {
        // One connection per replica sends every service's keys to one node, and a detector
        // commit spans services: a Cluster moves most of them elsewhere (`MOVED`).
        Some("cluster") => {
            return Some(
                "Redis runs as a Cluster node (redis_mode:cluster), which downradar does not \
                 support: a replica sends every service's keys, and the detector commits \
                 every service's state, to the one Redis of --redis-url; use a standalone \
                 Redis (with replicas for failover)"
                    .to_owned(),
            );
        }
        Some("sentinel") => {
            return Some(
                "this is a Redis Sentinel (redis_mode:sentinel), which holds no data: give \
                 --redis-url the address of the Redis it monitors"
                    .to_owned(),
            );
        }
        _ => {}
    }
    let version = field("redis_version")?;
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    let (Some(Some(major)), Some(Some(minor))) = (parts.next(), parts.next()) else {
        return None;
    };
    ((major, minor) < MIN_REDIS_VERSION).then(|| {
        format!(
            "Redis {version} is too old: downradar needs Redis {}.{} or later",
            MIN_REDIS_VERSION.0, MIN_REDIS_VERSION.1
        )
    })
}

/// Most bucket reads sent in one pipeline round trip (and index entries read at once).
const READ_CHUNK: usize = 1000;

/// Reads of at least this many fine buckets per hour they span first ask the hourly
/// roll-ups which hours hold any report (see `RedisStore::active_hours`).
const SKIP_EMPTY_HOURS_FROM: usize = 4;

/// Index entries of one second re-read when a listing continues among them (see
/// `incidents`): the margin for incidents of that second resolved meanwhile.
const TIE_MARGIN: usize = 100;

/// The `dr:detector:saved` entry of a state saved at `cursor`: the cursor and a checksum of
/// the state, `<cursor>:<16 hex digits>`.
fn saved_entry(cursor: i64, state: &[u8]) -> String {
    format!("{cursor}:{:016x}", fnv1a(state))
}

/// The cursor a state was saved at, from its `dr:detector:saved` entry; `None` when the entry
/// is not of this state. Releases before the entry existed saved every state at every step
/// and left the hash alone: a state one of them wrote (after this release led, in a rolling
/// deploy or a rollback) has a stale entry or none, and was saved at the detector's cursor.
fn saved_at(entry: &str, state: &[u8]) -> Option<i64> {
    let (cursor, sum) = entry.split_once(':')?;
    (u64::from_str_radix(sum, 16).ok()? == fnv1a(state))
        .then(|| cursor.parse().ok())
        .flatten()
}

/// Gap decisions as `dr:detector:gaps` holds them: `<start>:<1|0>`, comma-separated.
fn encode_gaps(gaps: &[GapDecision]) -> String {
    gaps.iter()
        .map(|gap| format!("{}:{}", gap.bucket, u8::from(gap.missing)))
        .collect::<Vec<_>>()
        .join(",")
}

/// The decisions `dr:detector:gaps` holds; a malformed value is logged and taken as none (a
/// replay then decides those buckets anew, as before the decisions were kept).
fn decode_gaps(text: &str) -> Vec<GapDecision> {
    let parse = |entry: &str| {
        let (bucket, missing) = entry.split_once(':')?;
        let missing = match missing {
            "1" => true,
            "0" => false,
            _ => return None,
        };
        Some(GapDecision {
            bucket: bucket.parse().ok()?,
            missing,
        })
    };
    let gaps: Option<Vec<GapDecision>> = text
        .split(',')
        .filter(|entry| !entry.is_empty())
        .map(parse)
        .collect();
    gaps.unwrap_or_else(|| {
        tracing::warn!(value = text, "ignoring malformed detector gap decisions");
        Vec::new()
    })
}

/// 64-bit FNV-1a.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A thread of its own, with its own runtime, that drives the read connection (it is made,
/// and re-made after a failure, there) and receives every read's replies: a large series
/// read's reply (30,000 buckets, about 0.1 s of decoding) then no longer holds up the write
/// connection's replies, whose driver runs on another thread (the one it was first used or
/// last re-made from), and with them every report waiting for its batch. Replies are turned
/// into their types by the callers, on their own threads. The thread ends when the store
/// is dropped.
struct ReadThread {
    runtime: tokio::runtime::Handle,
    /// Dropped with the store, which ends the thread.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl ReadThread {
    fn start() -> Result<Self, StoreError> {
        let failed = |e: std::io::Error| StoreError::Backend(format!("no read thread: {e}"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (started, handle) = std::sync::mpsc::channel();
        // The runtime is made, and dropped, on its thread: never inside the caller's.
        std::thread::Builder::new()
            .name("redis-reads".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match runtime {
                    Ok(runtime) => {
                        let _ = started.send(Ok(runtime.handle().clone()));
                        let _ = runtime.block_on(stopped);
                    }
                    Err(e) => {
                        let _ = started.send(Err(e));
                    }
                }
            })
            .map_err(failed)?;
        let runtime = handle
            .recv()
            .map_err(|_| StoreError::Backend("no read thread: it ended at once".into()))?
            .map_err(failed)?;
        Ok(Self {
            runtime,
            _stop: stop,
        })
    }

    /// Runs `task` on the thread; dropping the future (a client that went away, a timeout)
    /// cancels it, and a panic in it is the caller's.
    async fn run<T: Send + 'static>(
        &self,
        task: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);
        impl<T> Drop for AbortOnDrop<T> {
            fn drop(&mut self) {
                self.0.abort();
            }
        }
        let mut task = AbortOnDrop(self.runtime.spawn(task));
        match (&mut task.0).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(StoreError::Backend(format!("a read was lost: {e}"))),
        }
    }
}

/// The Redis-backed store.
pub struct RedisStore {
    /// Report batches, revocations and pings.
    writes: ConnectionManager,
    /// Series reads, run on [`reads_thread`](Self::reads_thread).
    reads: ConnectionManager,
    /// The thread the read connection is driven on.
    reads_thread: ReadThread,
    settings: StoreSettings,
    record: Script,
    revoke: Script,
    lease: Script,
    release: Script,
    commit: Script,
    client: redis::Client,
    /// The connection [`Store::wait_events`] blocks (`XREAD BLOCK`), made when first needed
    /// and dropped after a failure, so it never holds up the shared connections.
    blocking: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    /// The bucket width of the detector leader when it is not this replica's (0 when they
    /// agree, or no leader said): reports are then refused (see
    /// [`check_bucket_width`](Self::check_bucket_width)).
    leader_width: AtomicI64,
}

impl RedisStore {
    /// A store on the Redis at `url`. The connection is made lazily and re-made after every
    /// failure, so the server starts (and reports not-ready) while Redis is down.
    pub fn connect(url: &str, settings: StoreSettings) -> Result<Self, StoreError> {
        // TCP_NODELAY, which redis-rs leaves off: over a real network, Nagle's algorithm holds
        // a small pipeline written while the previous one is unacknowledged until the peer's
        // (possibly delayed) ACK. (Over loopback, where ACKs are immediate, it measured the
        // same either way.)
        let info = redis::IntoConnectionInfo::into_connection_info(url)
            .map_err(|e| StoreError::Backend(format!("--redis-url: not a Redis URL: {e}")))?
            .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        let client = redis::Client::open(info)
            .map_err(|e| StoreError::Backend(format!("--redis-url: not a Redis URL: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500))
            .set_number_of_retries(4);
        let connect = || {
            ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
                .map_err(|e| StoreError::Backend(e.to_string()))
        };
        // The read connection is made on its thread, so that its background tasks (a RESP3
        // connection's disconnect listener, which re-makes it) run there too.
        let reads_thread = ReadThread::start()?;
        let reads = {
            let _on_reads_thread = reads_thread.runtime.enter();
            connect()?
        };
        Ok(Self {
            writes: connect()?,
            reads,
            reads_thread,
            settings,
            record: Script::new(RECORD_LUA),
            revoke: Script::new(REVOKE_LUA),
            lease: Script::new(LEASE_LUA),
            release: Script::new(RELEASE_LUA),
            commit: Script::new(COMMIT_LUA),
            client,
            blocking: tokio::sync::Mutex::new(None),
            leader_width: AtomicI64::new(0),
        })
    }

    /// Why the server cannot serve downradar, when it is older than needed (see
    /// [`MIN_REDIS_VERSION`]) or runs as a Cluster node or a Sentinel; `None` when it can. An
    /// error when it does not answer, or does not let this user run `INFO`.
    pub async fn unsupported(&self) -> Result<Option<String>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("INFO").arg("server");
        let (info,): (String,) = Self::query(&self.writes, &pipe).await?;
        Ok(unsupported(&info))
    }

    /// Why Redis will not let downradar in, when it says so: it refused the user or password
    /// of the URL, requires a password the URL does not give, denies the user `PING`, or has
    /// no database of the URL's number.
    /// Retrying never mends these, unlike a Redis that does not answer; so `None` too when a
    /// fresh connection cannot be made, or gets no answer, within `within`.
    pub async fn refusal(&self, within: Duration) -> Option<String> {
        let probe = async {
            let mut conn = self.client.get_multiplexed_async_connection().await?;
            redis::cmd("PING").query_async::<()>(&mut conn).await
        };
        match tokio::time::timeout(within, probe).await {
            Ok(Err(e)) => refusal_of(&e),
            _ => None,
        }
    }

    /// Whether the detector's leader reads the buckets this replica writes: the leader
    /// writes its `--bucket` with its lease ([`keys::detector_bucket`]). A replica started
    /// with another width answered reports 202 into buckets nobody detects on; while the
    /// widths differ, this replica's reports are refused (503) and its `/readyz` fails,
    /// with this error as the reason. Checked with every clock reading and readiness check.
    pub async fn check_bucket_width(&self) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.get(keys::detector_bucket());
        let (leader,): (Option<String>,) = self.read(pipe).await?;
        self.note_leader_width(leader.as_deref())
    }

    /// Takes the leader's bucket width as read from Redis (see
    /// [`check_bucket_width`](Self::check_bucket_width)).
    fn note_leader_width(&self, leader: Option<&str>) -> Result<(), StoreError> {
        let own = self.settings.width(Granularity::Fine);
        let other = leader
            .and_then(|w| w.parse::<i64>().ok())
            .filter(|&w| w != own)
            .unwrap_or(0);
        self.leader_width.store(other, Ordering::Relaxed);
        self.width_refusal()
    }

    /// The refusal of this replica's writes while the leader's bucket width is not its own.
    fn width_refusal(&self) -> Result<(), StoreError> {
        match self.leader_width.load(Ordering::Relaxed) {
            0 => Ok(()),
            leader => Err(StoreError::Misconfigured(format!(
                "--bucket is {}s here, but the detector's leader reads buckets of {leader}s, \
                 so the reports written here would never be detected: give every replica \
                 (and import) the same --bucket",
                self.settings.width(Granularity::Fine)
            ))),
        }
    }

    /// Redis's own clock (`TIME`), which every replica follows (see
    /// [`crate::clock::StoreClock`]).
    pub async fn server_time(&self) -> Result<time::OffsetDateTime, StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("TIME");
        let ((secs, micros),): ((i64, i64),) = Self::query(&self.writes, &pipe).await?;
        time::OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(secs) * 1_000_000_000 + i128::from(micros) * 1_000,
        )
        .map_err(|e| StoreError::Backend(format!("unexpected TIME reply: {e}")))
    }

    /// The width of `granularity`'s buckets and the starts of those starting in
    /// `[from, until)`: multiples of the width, the first one at or after `from`.
    fn bucket_starts(&self, granularity: Granularity, from: i64, until: i64) -> (i64, Vec<i64>) {
        let width = self.settings.width(granularity);
        let first = crate::buckets::align(from + width - 1, width);
        (width, (first..until).step_by(width as usize).collect())
    }

    /// For a large read of fine buckets (a detector's warm-up or catch-up: at least
    /// [`READ_CHUNK`] reads, and [`SKIP_EMPTY_HOURS_FROM`] per hour spanned): the (service
    /// index, hour start) pairs whose hourly roll-up exists. A fine bucket holds reports only
    /// if its hour's roll-up does, since every write adds to both and the roll-up outlives
    /// the bucket. `None` (read every bucket) otherwise, for hourly buckets, and when the
    /// roll-ups are kept for less time than the buckets. (The settings are today's: roll-ups
    /// written while `--rollup-retention` was shorter than `--retention`, or evicted by a
    /// `maxmemory` policy, could expire before their buckets and hide them.) A first
    /// leader's warm-up reads a week of every service: of 10,000 services mostly quiet, that
    /// was 100 million bucket reads, and is one read per service-hour without a report.
    async fn active_hours(
        &self,
        services: &[ServiceId],
        granularity: Granularity,
        starts: &[i64],
    ) -> Result<Option<HashSet<(usize, i64)>>, StoreError> {
        let width = self.settings.width(granularity);
        let (Some(&first), Some(&last)) = (starts.first(), starts.last()) else {
            return Ok(None);
        };
        let first_hour = crate::buckets::align(first, ROLLUP_SECS);
        let spanned = ((last - first_hour) / ROLLUP_SECS + 1) as usize;
        if granularity != Granularity::Fine
            || width >= ROLLUP_SECS
            || self.settings.rollup_retention < self.settings.retention
            || services.len() * starts.len() < READ_CHUNK
            || starts.len() < SKIP_EMPTY_HOURS_FROM * spanned
        {
            return Ok(None);
        }
        let hours: Vec<i64> = (first_hour..=last).step_by(ROLLUP_SECS as usize).collect();
        let checks: Vec<(usize, i64)> = (0..services.len())
            .flat_map(|s| hours.iter().map(move |&hour| (s, hour)))
            .collect();
        let mut active = HashSet::new();
        for chunk in checks.chunks(READ_CHUNK) {
            let mut pipe = redis::pipe();
            for &(s, hour) in chunk {
                pipe.exists(keys::bucket(&services[s], ROLLUP_SECS, hour));
            }
            let exists: Vec<bool> = self.read(pipe).await?;
            if exists.len() != chunk.len() {
                return Err(StoreError::Backend(
                    "a roll-up pipeline lost replies".into(),
                ));
            }
            active.extend(
                chunk
                    .iter()
                    .zip(exists)
                    .filter(|(_, e)| *e)
                    .map(|(c, _)| *c),
            );
        }
        Ok(Some(active))
    }

    /// Runs `pipe` on `conn` within [`CALL_TIMEOUT`].
    async fn query<T: redis::FromRedisValue>(
        conn: &ConnectionManager,
        pipe: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        Self::query_raw(conn, pipe, false)
            .await?
            .map_err(backend_error)
    }

    /// Runs `pipe`, which is safe to run twice (a read), on `conn` within
    /// [`CALL_TIMEOUT`], sent once more if the connection turns out dropped (see
    /// [`query_raw`](Self::query_raw)).
    async fn query_idempotent<T: redis::FromRedisValue>(
        conn: &ConnectionManager,
        pipe: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        Self::query_raw(conn, pipe, true)
            .await?
            .map_err(backend_error)
    }

    /// Runs `pipe`, a read, on the read connection as [`query_idempotent`](Self::query_idempotent)
    /// does, on the connection's own thread (see [`ReadThread`]), within [`CALL_TIMEOUT`]
    /// from now (a read queued behind others on that thread included); the reply is turned
    /// into `T` here.
    async fn read<T: redis::FromRedisValue>(&self, pipe: redis::Pipeline) -> Result<T, StoreError> {
        let conn = self.reads.clone();
        let on_thread = self
            .reads_thread
            .run(async move { Self::query_idempotent::<Value>(&conn, &pipe).await });
        let reply = tokio::time::timeout(CALL_TIMEOUT, on_thread)
            .await
            .map_err(|_| StoreError::Timeout(CALL_TIMEOUT))??;
        redis::from_redis_value(reply).map_err(|e| StoreError::Backend(cut_error(e.to_string())))
    }

    /// Runs a pipeline of `script` calls; when Redis has lost the script (`NOSCRIPT`), loads
    /// it and sends the pipeline once more. Usually none of the pipeline ran; but another
    /// replica may load the script between two of its calls, so the calls after that ran, and
    /// run again: the scripts sent here are idempotent per report (recording answers a report
    /// counted before as counted, revoking twice is harmless).
    async fn query_script<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        pipe: &redis::Pipeline,
        idempotent: bool,
    ) -> Result<T, StoreError> {
        match Self::query_raw(&self.writes, pipe, idempotent).await? {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                let mut load = redis::pipe();
                load.load_script(script).ignore();
                let again = async {
                    Self::query::<()>(&self.writes, &load).await?;
                    Self::query(&self.writes, pipe).await
                };
                // Part of the first sending may have run: a refused connection now does not
                // mean that nothing was applied.
                again.await.map_err(|e| match e {
                    StoreError::Unreachable(message) => StoreError::Backend(message),
                    other => other,
                })
            }
            result => result.map_err(backend_error),
        }
    }

    /// Sends the states of a large commit ahead of it, each to its staged key
    /// ([`keys::detector_staged`]), in calls of about [`STAGE_CHUNK_BYTES`]; the commit then
    /// renames them into place. In one script call, the 70 MB of 10,000 states stalled Redis
    /// for half a second (and came near the call timeout); sent in chunks, other clients'
    /// commands run between them, and the commit itself carries names only. A staged state
    /// that is never renamed expires.
    async fn stage_states(
        &self,
        holder: &str,
        states: &[(ServiceId, Vec<u8>)],
    ) -> Result<(), StoreError> {
        let ttl = STAGED_TTL.as_millis() as u64;
        let mut rest = states;
        while !rest.is_empty() {
            let mut bytes = 0;
            let take = rest
                .iter()
                .take_while(|(_, state)| {
                    let first = bytes == 0;
                    bytes += state.len();
                    first || bytes <= STAGE_CHUNK_BYTES
                })
                .count();
            let (chunk, later) = rest.split_at(take);
            let mut pipe = redis::pipe();
            for (service, state) in chunk {
                pipe.cmd("SET")
                    .arg(keys::detector_staged(service, holder))
                    .arg(state.as_slice())
                    .arg("PX")
                    .arg(ttl)
                    .ignore();
            }
            Self::query::<()>(&self.writes, &pipe).await?;
            rest = later;
        }
        Ok(())
    }

    /// Runs one call of `script` on the write connection and returns its reply; with
    /// `idempotent` (the call is safe to make twice), sent once more if the connection turns
    /// out dropped.
    async fn run_script(
        &self,
        script: &Script,
        call: &redis::ScriptInvocation<'_>,
        idempotent: bool,
    ) -> Result<Value, StoreError> {
        let mut pipe = redis::pipe();
        pipe.invoke_script(call);
        let mut replies: Vec<Value> = self.query_script(script, &pipe, idempotent).await?;
        match (replies.pop(), replies.is_empty()) {
            (Some(reply), true) => Ok(reply),
            _ => Err(StoreError::Backend("a script call lost its reply".into())),
        }
    }

    /// Reads the incidents of `ids`: the records of those that still exist, in the order
    /// given.
    async fn incident_records(&self, ids: &[String]) -> Result<Vec<Incident>, StoreError> {
        let mut out = Vec::new();
        let parsed: Vec<(&String, ServiceId, i64)> = ids
            .iter()
            .filter_map(|id| {
                let (service, start) = parse_incident_id(id)?;
                Some((id, service, start))
            })
            .collect();
        for chunk in parsed.chunks(READ_CHUNK) {
            let mut pipe = redis::pipe();
            for (_, service, start) in chunk {
                pipe.get(keys::incident(service, *start));
            }
            let records: Vec<Option<String>> = self.read(pipe).await?;
            for ((id, _, _), record) in chunk.iter().zip(records) {
                if let Some(incident) = record.and_then(|json| parse_json(&json, id)) {
                    out.push(incident);
                }
            }
        }
        Ok(out)
    }

    /// What to say of a call that got no answer within `after`. The shared connections
    /// retry a failed connection until the call times out, which hides why it failed; a
    /// fresh connection, given [`PROBE_TIMEOUT`], says it (`Connection refused`, a name that
    /// does not resolve, a password refused). Still a timeout when that connects, or hangs
    /// too.
    async fn why_unanswered(&self, after: Duration) -> StoreError {
        let fresh = self.client.get_multiplexed_async_connection();
        match tokio::time::timeout(PROBE_TIMEOUT, fresh).await {
            Ok(Err(e)) => StoreError::Unreachable(format!(
                "no answer within {after:?}, and a new connection fails: {e}"
            )),
            _ => StoreError::Timeout(after),
        }
    }

    /// Runs `pipe` on `conn` within [`CALL_TIMEOUT`], keeping Redis's own error for the
    /// caller to judge. With `idempotent`, a pipeline that finds the connection dropped is
    /// sent once more, within the same time: the manager answers the first command on a
    /// connection that broke while idle (Redis restarted; or its task ran on a runtime that
    /// has stopped, an HTTP worker's at shutdown) with that error, and reconnects. (A
    /// replica's first read after a Redis restart answered 503 while `/readyz` said 200, and
    /// the leader's lease release at shutdown failed, its successor waiting out the lease.)
    async fn query_raw<T: redis::FromRedisValue>(
        conn: &ConnectionManager,
        pipe: &redis::Pipeline,
        idempotent: bool,
    ) -> Result<redis::RedisResult<T>, StoreError> {
        let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
        let mut conn = conn.clone();
        let mut result = tokio::time::timeout_at(deadline, pipe.query_async(&mut conn))
            .await
            .map_err(|_| StoreError::Timeout(CALL_TIMEOUT))?;
        if idempotent
            && result
                .as_ref()
                .is_err_and(redis::RedisError::is_connection_dropped)
        {
            result = tokio::time::timeout_at(deadline, pipe.query_async(&mut conn))
                .await
                .map_err(|_| StoreError::Timeout(CALL_TIMEOUT))?;
        }
        Ok(result)
    }

    /// The keys a report touches, in script order: its dedup marker, its address counter
    /// (the marker again, untouched, when reporters per address are not limited), its fine
    /// bucket and its hourly bucket.
    fn report_keys(&self, report: &Report) -> [String; 4] {
        let fine = self.settings.width(Granularity::Fine);
        let hourly = self.settings.width(Granularity::Hourly);
        let seen = keys::seen(&report.service, report.reporter);
        let address = match self.settings.max_reporters_per_address {
            Some(_) => keys::address(&report.service, report.address.unwrap_or(report.reporter)),
            None => seen.clone(),
        };
        [
            seen,
            address,
            keys::bucket(&report.service, fine, report.bucket),
            keys::bucket(
                &report.service,
                hourly,
                crate::buckets::align(report.bucket, hourly),
            ),
        ]
    }

    /// The reporter limit per address as a script argument: 0 for none.
    fn cap(&self) -> u32 {
        self.settings
            .max_reporters_per_address
            .map_or(0, |n| n.get())
    }
}

/// A reply that does not have the expected shape, as a store error.
fn parse_error(e: redis::ParsingError) -> StoreError {
    StoreError::Backend(format!("unexpected reply: {e}"))
}

/// The entries of an `XRANGE` reply as (id, value of the field `event`).
fn stream_entries(reply: Value) -> Result<Vec<(String, Option<String>)>, StoreError> {
    let Value::Array(entries) = reply else {
        return Err(StoreError::Backend(format!(
            "unexpected XRANGE reply {reply:?}"
        )));
    };
    entries
        .into_iter()
        .map(|entry| {
            let (id, fields): (String, Vec<Value>) =
                redis::from_redis_value(entry).map_err(parse_error)?;
            let event = fields
                .chunks(2)
                .find(|pair| {
                    matches!(&pair[0], Value::BulkString(name) if name.as_slice() == b"event")
                })
                .and_then(|pair| pair.get(1))
                .and_then(|value| redis::from_redis_value_ref::<String>(value).ok());
            Ok((id, event))
        })
        .collect()
}

/// The events of stream entries; entries without a parsable event are logged and skipped.
/// Also returns the id of the last entry, parsed.
fn stream_events(
    entries: Vec<(String, Option<String>)>,
) -> Result<(Vec<StreamEvent>, Option<StreamId>), StoreError> {
    let mut last = None;
    let mut out = Vec::with_capacity(entries.len());
    for (id, json) in entries {
        last = Some(
            parse_stream_id(&id)
                .ok_or_else(|| StoreError::Backend(format!("unexpected stream id {id:?}")))?,
        );
        let event = match json {
            Some(json) => parse_json(&json, &id),
            None => {
                tracing::warn!(id, "ignoring a stream entry without an event field");
                None
            }
        };
        if let Some(event) = event {
            out.push(StreamEvent { id, event });
        }
    }
    Ok((out, last))
}

/// A field of an `XINFO STREAM` reply (a map, or a flat list of names and values).
fn info_field<'a>(reply: &'a Value, name: &str) -> Option<&'a Value> {
    let is_name = |v: &Value| match v {
        Value::BulkString(b) => b.as_slice() == name.as_bytes(),
        Value::SimpleString(s) => s == name,
        _ => false,
    };
    match reply {
        Value::Map(pairs) => pairs.iter().find(|(k, _)| is_name(k)).map(|(_, v)| v),
        Value::Array(items) => items
            .chunks(2)
            .find(|pair| is_name(&pair[0]))
            .and_then(|pair| pair.get(1)),
        _ => None,
    }
}

/// A stream id in a reply, parsed.
fn reply_stream_id(value: Option<&Value>) -> Option<(u64, u64)> {
    let id: String = redis::from_redis_value_ref(value?).ok()?;
    parse_stream_id(&id)
}

/// The current revocation period: revoked tokens are kept in one hash per period of
/// [`StoreSettings::REVOCATION_TTL`], so a trickle of revocations cannot keep old tokens alive.
/// A write is checked against the periods around its own, so replicas' clocks may differ, and
/// a write be delayed, by up to one period.
fn revocation_period() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    now.as_secs() / StoreSettings::REVOCATION_TTL.as_secs()
}

/// What to tell an operator of `e` when it is Redis refusing this client (see
/// [`RedisStore::refusal`]).
fn refusal_of(e: &redis::RedisError) -> Option<String> {
    match (e.kind(), e.code()) {
        (redis::ErrorKind::AuthenticationFailed, _) => Some(
            "Redis refused the user or password of --redis-url (redis://:PASSWORD@HOST:PORT, \
             or redis://USER:PASSWORD@HOST:PORT for an ACL user)"
                .to_owned(),
        ),
        (_, Some("NOAUTH")) => Some(
            "Redis requires a password and --redis-url gives none (redis://:PASSWORD@HOST:PORT, \
             or redis://USER:PASSWORD@HOST:PORT for an ACL user)"
                .to_owned(),
        ),
        (_, Some("NOPERM")) => Some(format!(
            "the user of --redis-url may not run downradar's commands: {}",
            cut_error(e.to_string())
        )),
        // The `SELECT` of the URL's database, refused as the connection was made.
        _ if e.to_string().contains("refused to switch database") => Some(format!(
            "Redis has no database of the number --redis-url gives after its port \
             (redis://HOST:PORT/DB, DB from 0 to one less than Redis's `databases`, 16 by \
             default): {}",
            cut_error(e.detail().unwrap_or("refused").to_owned())
        )),
        _ => None,
    }
}

/// A Redis error as a store error; a refused connection means the command was never sent.
fn backend_error(e: redis::RedisError) -> StoreError {
    if e.is_connection_refusal() {
        StoreError::Unreachable(cut_error(e.to_string()))
    } else {
        StoreError::Backend(cut_error(e.to_string()))
    }
}

/// Most characters of a Redis error kept in a store error: a failed pipeline's error lists
/// every command that failed (an import's batch out of memory: 200 KB on one line).
const MAX_ERROR_CHARS: usize = 500;

fn cut_error(message: String) -> String {
    match message.char_indices().nth(MAX_ERROR_CHARS) {
        Some((end, _)) => format!(
            "{}… ({} characters in all)",
            &message[..end],
            message.chars().count()
        ),
        None => message,
    }
}

/// A bucket field's count, as `HINCRBY` stores it.
fn count(value: &Value) -> Result<u64, StoreError> {
    match value {
        Value::BulkString(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                StoreError::Backend(format!("a bucket count is not a number: {value:?}"))
            }),
        Value::Int(n) => u64::try_from(*n)
            .map_err(|_| StoreError::Backend(format!("a negative bucket count: {n}"))),
        other => Err(StoreError::Backend(format!(
            "unexpected bucket count {other:?}"
        ))),
    }
}

/// The sum of the counts of the `(field, count)` pairs of a bucket hash whose field is a
/// cell in `of`.
fn matching_sum<'v>(
    pairs: impl Iterator<Item = (&'v Value, &'v Value)>,
    of: CellFilter<'_>,
) -> Result<u64, StoreError> {
    let mut sum = 0;
    for (cell, n) in pairs {
        if let Value::BulkString(cell) = cell
            && field_matches(cell, of)
        {
            sum += count(n)?;
        }
    }
    Ok(sum)
}

/// Whether the bucket field `cell` is a cell in `of`, as [`Cell::parse_field`] would read
/// it (a region code in either case that names a region, a well-formed problem), without
/// building the cell.
fn field_matches(cell: &[u8], of: CellFilter<'_>) -> bool {
    let Some(colon) = cell.iter().position(|&b| b == b':') else {
        return false;
    };
    let (region, problem) = (&cell[..colon], &cell[colon + 1..]);
    let region = std::str::from_utf8(region)
        .ok()
        .and_then(|r| RegionCode::parse(r).ok());
    let Some(region) = region else {
        return false;
    };
    if of.region.is_some_and(|r| r != region) {
        return false;
    }
    match of.problem {
        Some(p) => problem == p.as_bytes(),
        None => std::str::from_utf8(problem).is_ok_and(|p| Problem::parse(p).is_ok()),
    }
}

/// Indices of `batch` grouped by service, so each script call stays on one hash slot.
fn by_service(batch: &[Report]) -> BTreeMap<&ServiceId, Vec<usize>> {
    let mut groups: BTreeMap<&ServiceId, Vec<usize>> = BTreeMap::new();
    for (i, report) in batch.iter().enumerate() {
        groups.entry(&report.service).or_default().push(i);
    }
    groups
}

#[async_trait]
impl Store for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn record(&self, batch: &[Report]) -> Result<Vec<Recorded>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.width_refusal()?;
        let groups = by_service(batch);
        let period = revocation_period();
        let window_ms = self.settings.dedup_window.as_millis() as u64;
        let mut pipe = redis::pipe();
        let fine = self.settings.width(Granularity::Fine);
        let hourly = self.settings.width(Granularity::Hourly);
        for (service, indices) in &groups {
            // The bucket pairs (fine bucket, roll-up) of these reports, in order of appearance.
            let mut starts: Vec<i64> = Vec::new();
            let pair_of: Vec<usize> = indices
                .iter()
                .map(|&i| {
                    let start = batch[i].bucket;
                    starts.iter().position(|&s| s == start).unwrap_or_else(|| {
                        starts.push(start);
                        starts.len() - 1
                    }) + 1
                })
                .collect();
            let mut call = self.record.prepare_invoke();
            call.key(keys::revoked(service, period - 1))
                .key(keys::revoked(service, period))
                .key(keys::revoked(service, period + 1))
                .arg(window_ms)
                .arg(self.cap())
                .arg(starts.len());
            for &start in &starts {
                let hour = crate::buckets::align(start, hourly);
                call.key(keys::bucket(service, fine, start))
                    .key(keys::bucket(service, hourly, hour))
                    .arg(self.settings.expires_at(Granularity::Fine, start))
                    .arg(self.settings.expires_at(Granularity::Hourly, hour));
            }
            for (&i, pair) in indices.iter().zip(pair_of) {
                let report = &batch[i];
                call.key(keys::seen(service, report.reporter));
                if self.settings.max_reporters_per_address.is_some() {
                    call.key(keys::address(
                        service,
                        report.address.unwrap_or(report.reporter),
                    ));
                }
                call.arg(report.token.to_hex())
                    .arg(report.cell.field())
                    .arg(pair);
            }
            pipe.invoke_script(&call);
        }
        let replies: Vec<Vec<i64>> = self.query_script(&self.record, &pipe, false).await?;
        if replies.len() != groups.len() {
            return Err(StoreError::Backend("record pipeline lost replies".into()));
        }
        let mut outcomes = vec![Recorded::Duplicate; batch.len()];
        for (indices, reply) in groups.values().zip(&replies) {
            if reply.len() != indices.len() {
                return Err(StoreError::Backend(format!(
                    "record script answered {} results for {} reports",
                    reply.len(),
                    indices.len()
                )));
            }
            for (&i, &code) in indices.iter().zip(reply) {
                outcomes[i] = match code {
                    1 => Recorded::Counted,
                    0 => Recorded::Duplicate,
                    2 => Recorded::Capped,
                    _ => Recorded::Revoked,
                };
            }
        }
        Ok(outcomes)
    }

    async fn revoke(&self, reports: &[Report]) -> Result<(), StoreError> {
        if reports.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        let period = revocation_period();
        for (service, indices) in by_service(reports) {
            let mut call = self.revoke.prepare_invoke();
            call.key(keys::revoked(service, period))
                .key(keys::generation(service))
                .arg(2 * StoreSettings::REVOCATION_TTL.as_millis() as u64)
                .arg(self.cap());
            for i in indices {
                let report = &reports[i];
                for key in self.report_keys(report) {
                    call.key(key);
                }
                call.arg(report.token.to_hex()).arg(report.cell.field());
            }
            pipe.invoke_script(&call).ignore();
        }
        self.query_script::<()>(&self.revoke, &pipe, false).await
    }

    async fn add_history(&self, counts: &[HistoryCount]) -> Result<HistoryAdded, StoreError> {
        if counts.is_empty() {
            return Ok(HistoryAdded::default());
        }
        // Sum per (key, field) first: history arrives one cell-minute per row, and a roll-up
        // key gets up to sixty of them. What has expired is judged by Redis's clock, which
        // expires the keys (a host clock behind it would count rows Redis drops at once).
        let now = self.server_time().await?.unix_timestamp();
        let fine = self.settings.width(Granularity::Fine);
        let hourly = self.settings.width(Granularity::Hourly);
        let mut sums: BTreeMap<(String, String), u64> = BTreeMap::new();
        let mut expiries: BTreeMap<String, i64> = BTreeMap::new();
        let mut added = HistoryAdded::default();
        for c in counts {
            let hour = crate::buckets::align(c.bucket, hourly);
            let mut targets = vec![(Granularity::Fine, fine, c.bucket)];
            if hourly != fine {
                targets.push((Granularity::Hourly, hourly, hour));
            }
            let (mut to_fine, mut counted) = (false, false);
            for (granularity, width, start) in targets {
                let expires_at = self.settings.expires_at(granularity, start);
                if expires_at <= now {
                    continue;
                }
                to_fine |= granularity == Granularity::Fine;
                counted = true;
                let key = keys::bucket(&c.service, width, start);
                *sums.entry((key.clone(), c.cell.field())).or_default() += c.count;
                expiries.insert(key, expires_at);
            }
            added.count(c.count, to_fine, counted);
        }
        // The services' generations move before the counts and again after them: a reader
        // that tags sums read in between with the first move finds the second; and a
        // pipeline that stops half-way (Redis out of memory, the connection lost) has moved
        // them all the same.
        let services: BTreeSet<&ServiceId> = counts.iter().map(|c| &c.service).collect();
        let mut pipe = redis::pipe();
        for service in &services {
            pipe.incr(keys::generation(service), 1).ignore();
        }
        for ((key, field), n) in &sums {
            pipe.hincr(key, field, *n).ignore();
        }
        for service in &services {
            pipe.incr(keys::generation(service), 1).ignore();
        }
        for (key, at) in &expiries {
            // Set where the bucket has no expiry yet, else only ever lengthened: an import
            // given a shorter --retention than the server's must not cut its live buckets'.
            for option in ["NX", "GT"] {
                pipe.cmd("EXPIREAT").arg(key).arg(*at).arg(option).ignore();
            }
        }
        if !sums.is_empty() {
            Self::query::<()>(&self.writes, &pipe).await?;
        }
        Ok(added)
    }

    async fn generation(&self, service: &ServiceId) -> Result<u64, StoreError> {
        // A counter that is not there starts at a random number: one lost with the data
        // (a Redis restarted empty, a flush, an older snapshot restored) must not come back
        // at a value that a replica holds sums of.
        let key = keys::generation(service);
        let start = getrandom::u64().map_err(|e| StoreError::Backend(e.to_string()))? >> 2;
        let mut pipe = redis::pipe();
        pipe.cmd("SET").arg(&key).arg(start).arg("NX").ignore();
        pipe.get(&key);
        let (generation,): (Option<u64>,) = self.read(pipe).await?;
        Ok(generation.unwrap_or(0))
    }

    async fn counts(
        &self,
        service: &ServiceId,
        granularity: Granularity,
        from: i64,
        until: i64,
    ) -> Result<Vec<BucketCounts>, StoreError> {
        let mut all = self
            .counts_many(std::slice::from_ref(service), granularity, from, until)
            .await?;
        Ok(all.pop().unwrap_or_default())
    }

    /// All services' buckets in pipelines of [`READ_CHUNK`] reads, not a round trip per
    /// service: the detector's tick reads every service's new bucket.
    async fn counts_many(
        &self,
        services: &[ServiceId],
        granularity: Granularity,
        from: i64,
        until: i64,
    ) -> Result<Vec<Vec<BucketCounts>>, StoreError> {
        let (width, starts) = self.bucket_starts(granularity, from, until);
        let active = self.active_hours(services, granularity, &starts).await?;
        let reads: Vec<(usize, i64)> = (0..services.len())
            .flat_map(|s| starts.iter().map(move |&start| (s, start)))
            .filter(|(s, start)| {
                active.as_ref().is_none_or(|active| {
                    active.contains(&(*s, crate::buckets::align(*start, ROLLUP_SECS)))
                })
            })
            .collect();
        let mut out = vec![Vec::new(); services.len()];
        for chunk in reads.chunks(READ_CHUNK) {
            let mut pipe = redis::pipe();
            for &(s, start) in chunk {
                pipe.hgetall(keys::bucket(&services[s], width, start));
            }
            let replies: Vec<Vec<(String, u64)>> = self.read(pipe).await?;
            if replies.len() != chunk.len() {
                return Err(StoreError::Backend("a counts pipeline lost replies".into()));
            }
            for (&(s, start), fields) in chunk.iter().zip(replies) {
                let service = &services[s];
                let mut cells: Vec<(Cell, u64)> = fields
                    .into_iter()
                    .filter(|&(_, n)| n > 0)
                    .filter_map(|(field, n)| {
                        let cell = Cell::parse_field(&field);
                        if cell.is_none() {
                            tracing::warn!(%service, field, "ignoring a bucket field that is not REGION:problem");
                        }
                        Some((cell?, n))
                    })
                    .collect();
                if !cells.is_empty() {
                    cells.sort();
                    out[s].push(BucketCounts { start, cells });
                }
            }
        }
        Ok(out)
    }

    /// Reads no more of each bucket than the filter needs and never builds its cells: `HGET`
    /// of the one field for a region and a problem, `HVALS` for the whole bucket, else
    /// `HGETALL` with the fields matched as bytes. (`HVALS` sums every field of the bucket's
    /// hash, `counts` only the well-formed `REGION:problem` ones; downradar writes no
    /// other.) Summing on the Redis side in a script cost Redis three to four times the CPU
    /// of these reads, and `HSCAN … MATCH` twice; and Redis's CPU is what every replica's
    /// reports share.
    async fn sums(
        &self,
        service: &ServiceId,
        granularity: Granularity,
        from: i64,
        until: i64,
        of: CellFilter<'_>,
    ) -> Result<Vec<(i64, u64)>, StoreError> {
        let (width, starts) = self.bucket_starts(granularity, from, until);
        let field = match (of.region, of.problem) {
            (Some(region), Some(problem)) => Some(format!("{region}:{problem}")),
            _ => None,
        };
        let mut out = Vec::new();
        for chunk in starts.chunks(READ_CHUNK) {
            let mut pipe = redis::pipe();
            for &start in chunk {
                let key = keys::bucket(service, width, start);
                match (&field, of.region, of.problem) {
                    (Some(field), _, _) => pipe.hget(key, field),
                    (None, None, None) => pipe.hvals(key),
                    _ => pipe.hgetall(key),
                };
            }
            let replies: Vec<Value> = self.read(pipe).await?;
            if replies.len() != chunk.len() {
                return Err(StoreError::Backend("a sums pipeline lost replies".into()));
            }
            let whole = of.region.is_none() && of.problem.is_none();
            for (&start, reply) in chunk.iter().zip(replies) {
                let sum = match reply {
                    Value::Nil => 0,
                    // HVALS
                    Value::Array(items) if whole => {
                        items.iter().map(count).sum::<Result<_, _>>()?
                    }
                    // HGETALL: an array of fields and counts, a map over RESP3.
                    Value::Array(items) if field.is_none() => {
                        matching_sum(items.chunks_exact(2).map(|pair| (&pair[0], &pair[1])), of)?
                    }
                    Value::Map(pairs) if field.is_none() => {
                        matching_sum(pairs.iter().map(|(cell, n)| (cell, n)), of)?
                    }
                    // HGET
                    other => count(&other)?,
                };
                if sum > 0 {
                    out.push((start, sum));
                }
            }
        }
        Ok(out)
    }

    /// Redis answers, and is not known to be too old (see [`MIN_REDIS_VERSION`]). A user
    /// that may not run `INFO` (in the `@dangerous` ACL category, which a least-privilege
    /// user is often denied, and nothing else downradar runs is) is taken to be recent enough.
    async fn ping(&self) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors()
            .cmd("PING")
            .cmd("INFO")
            .arg("server")
            .get(keys::detector_bucket());
        let (pong, info, leader): (Value, Value, Value) =
            match Self::query(&self.writes, &pipe).await {
                Err(StoreError::Timeout(after)) => return Err(self.why_unanswered(after).await),
                answer => answer?,
            };
        match pong {
            Value::SimpleString(s) if s == "PONG" => {}
            other => {
                return Err(StoreError::Backend(format!(
                    "unexpected PING reply {other:?}"
                )));
            }
        }
        let info = redis::from_redis_value::<String>(info).unwrap_or_default();
        if let Some(why) = unsupported(&info) {
            return Err(StoreError::Backend(why));
        }
        let leader = redis::from_redis_value::<Option<String>>(leader).unwrap_or_default();
        self.note_leader_width(leader.as_deref())
    }

    async fn acquire_lease(&self, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut call = self.lease.prepare_invoke();
        call.key(keys::detector_lease())
            .key(keys::detector_bucket())
            .arg(holder)
            .arg(lease_millis(ttl))
            .arg(self.settings.width(Granularity::Fine));
        let reply = self.run_script(&self.lease, &call, true).await?;
        Ok(redis::from_redis_value::<i64>(reply).map_err(parse_error)? == 1)
    }

    async fn release_lease(&self, holder: &str) -> Result<(), StoreError> {
        let mut call = self.release.prepare_invoke();
        call.key(keys::detector_lease()).arg(holder);
        self.run_script(&self.release, &call, true).await?;
        Ok(())
    }

    async fn detector_state(&self, service: &ServiceId) -> Result<Option<Vec<u8>>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.get(keys::detector_state(service));
        let (state,): (Option<Vec<u8>>,) = self.read(pipe).await?;
        Ok(state)
    }

    async fn load_detector(&self) -> Result<Option<DetectorSnapshot>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .get(keys::detector_cursor())
            .smembers(keys::detector_services())
            .hgetall(keys::detector_saved())
            .get(keys::detector_gaps());
        #[allow(clippy::type_complexity)]
        let (cursor, members, saved, gaps): (
            Option<i64>,
            Vec<String>,
            HashMap<String, String>,
            Option<String>,
        ) = self.read(pipe).await?;
        let Some(cursor) = cursor else {
            return Ok(None);
        };
        let mut services: Vec<ServiceId> = members
            .iter()
            .filter_map(|s| {
                let service = ServiceId::parse(s).ok();
                if service.is_none() {
                    tracing::warn!(
                        member = s,
                        "ignoring a detector service that is not a service id"
                    );
                }
                service
            })
            .collect();
        services.sort();
        let mut states = Vec::with_capacity(services.len());
        for chunk in services.chunks(READ_CHUNK) {
            let mut pipe = redis::pipe();
            for service in chunk {
                pipe.get(keys::detector_state(service));
            }
            let blobs: Vec<Option<Vec<u8>>> = self.read(pipe).await?;
            for (service, blob) in chunk.iter().zip(blobs) {
                if let Some(state) = blob {
                    let at = saved
                        .get(service.as_str())
                        .and_then(|entry| saved_at(entry, &state))
                        .unwrap_or(cursor);
                    states.push(SavedState {
                        service: service.clone(),
                        cursor: at.min(cursor),
                        state,
                    });
                }
            }
        }
        Ok(Some(DetectorSnapshot {
            cursor,
            services: states,
            gaps: gaps.as_deref().map(decode_gaps).unwrap_or_default(),
        }))
    }

    async fn commit_detector(&self, commit: DetectorCommit<'_>) -> Result<Vec<String>, StoreError> {
        let keep_incidents = whole_secs(self.settings.rollup_retention);
        let bytes: usize = commit.states.iter().map(|(_, state)| state.len()).sum();
        let staged = bytes > STAGE_FROM_BYTES;
        if staged {
            self.stage_states(commit.holder, commit.states).await?;
        }
        let mut call = self.commit.prepare_invoke();
        call.key(keys::detector_lease())
            .key(keys::detector_cursor())
            .key(keys::detector_services())
            .key(keys::events())
            .key(keys::incidents())
            .key(keys::active_incidents())
            .key(keys::detector_saved())
            .key(keys::detector_gaps())
            .arg(commit.holder)
            .arg(commit.cursor)
            .arg(self.settings.event_retention.as_millis() as u64)
            .arg(keep_incidents)
            .arg(commit.states.len())
            .arg(u8::from(staged))
            .arg(encode_gaps(commit.gaps))
            .arg(commit.refreshed.len());
        for (service, state) in commit.states {
            call.key(keys::detector_state(service))
                .arg(service.as_str());
            if staged {
                call.key(keys::detector_staged(service, commit.holder))
                    .arg("");
            } else {
                call.arg(state.as_slice());
            }
            call.arg(saved_entry(commit.cursor, state));
        }
        // An incident's keys and index member come from its service and start, which is what
        // its id says (`Incident::id_for`).
        for event in commit.events {
            let (event_json, incident_json) = to_json(event)?;
            let incident = &event.incident;
            let start = incident.started_at.unix_timestamp();
            call.key(keys::incident(&incident.service, start))
                .key(keys::incident_events(&incident.service, start))
                .key(keys::service_incidents(&incident.service))
                .arg(event_json)
                .arg(incident_json)
                .arg(Incident::id_for(&incident.service, start))
                .arg(start)
                .arg(start.saturating_add(keep_incidents))
                .arg(u8::from(incident.status == IncidentStatus::Resolved));
        }
        for incident in commit.refreshed {
            let start = incident.started_at.unix_timestamp();
            call.key(keys::incident(&incident.service, start))
                .arg(encode_json(incident)?)
                .arg(Incident::id_for(&incident.service, start));
        }
        for service in commit.forget {
            call.key(keys::detector_state(service))
                .arg(service.as_str());
        }
        call.arg(
            commit
                .continues_from
                .map(|c| c.to_string())
                .unwrap_or_default(),
        )
        .arg(commit.forget.len());
        match self.run_script(&self.commit, &call, false).await? {
            Value::Int(0) => Err(StoreError::LeaseLost),
            reply => {
                let ids: Vec<String> = redis::from_redis_value(reply).map_err(parse_error)?;
                if ids.len() != commit.events.len() {
                    return Err(StoreError::Backend(format!(
                        "the commit script answered {} stream ids for {} events",
                        ids.len(),
                        commit.events.len()
                    )));
                }
                Ok(ids)
            }
        }
    }

    async fn incidents(&self, query: &IncidentQuery) -> Result<Vec<Incident>, StoreError> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        // One service's incidents have their own index; its open ones are found among all
        // open ones (few), by the service part of their ids.
        let (index, filter) = match (&query.service, query.active_only) {
            (Some(service), false) => (keys::service_incidents(service), None),
            (service, true) => (keys::active_incidents(), service.as_ref()),
            (None, false) => (keys::incidents(), None),
        };
        // Scores are whole seconds, so inclusive bounds are exact.
        let until = query.until.map(|until| until.saturating_sub(1));
        let min = query
            .since
            .map_or_else(|| "-inf".to_owned(), |since| since.to_string());
        // Read in chunks, newest first: a little more than the limit first (records may have
        // expired, or be filtered out), then whole chunks. Each chunk continues from the last
        // entry read, by its score, not from an offset into the whole index, so that incidents
        // committed (or resolved) meanwhile neither repeat an incident nor hide one: entries
        // not after the last one read are dropped. Only within one second's ties does a chunk
        // skip ahead by an offset, short of the ties already read by a margin (a large tie
        // group must still make progress).
        let mut page = query.limit.saturating_add(8).min(READ_CHUNK);
        let mut last = query.after.clone();
        let mut ties: usize = 0;
        let mut out = Vec::new();
        loop {
            let before = IncidentQuery {
                after: last.clone(),
                ..query.clone()
            };
            let offset = ties.saturating_sub(TIE_MARGIN);
            let max = [until, last.as_ref().map(|(start, _)| *start)]
                .into_iter()
                .flatten()
                .min()
                .map_or_else(|| "+inf".to_owned(), |max| max.to_string());
            let mut pipe = redis::pipe();
            pipe.cmd("ZREVRANGEBYSCORE")
                .arg(&index)
                .arg(&max)
                .arg(&min)
                .arg("WITHSCORES")
                .arg("LIMIT")
                .arg(offset)
                .arg(page);
            let (ids,): (Vec<(String, i64)>,) = self.read(pipe).await?;
            let exhausted = ids.len() < page;
            if let Some((id, start)) = ids.last() {
                // How many entries of the last entry's second have been read: all of this
                // chunk's, and those skipped by the offset when the chunk is all that second.
                let same = ids.iter().rev().take_while(|(_, s)| s == start).count();
                ties = match &last {
                    Some((previous, _)) if previous == start && same == ids.len() => offset + same,
                    _ => same,
                };
                last = Some((*start, id.clone()));
            }
            let wanted: Vec<String> = ids
                .into_iter()
                .filter(|(id, start)| {
                    before.in_range(*start, id)
                        && filter.is_none_or(|s| incident_service(id) == Some(s.as_str()))
                })
                .map(|(id, _)| id)
                .collect();
            let records = self.incident_records(&wanted).await?;
            for incident in records.into_iter().filter(|i| query.filter.matches(i)) {
                out.push(incident);
                if out.len() == query.limit {
                    return Ok(out);
                }
            }
            if exhausted {
                return Ok(out);
            }
            page = READ_CHUNK;
        }
    }

    async fn incident(&self, id: &str) -> Result<Option<IncidentRecord>, StoreError> {
        let Some((service, start)) = parse_incident_id(id) else {
            return Ok(None);
        };
        let mut pipe = redis::pipe();
        pipe.atomic().get(keys::incident(&service, start)).lrange(
            keys::incident_events(&service, start),
            0,
            -1,
        );
        let (record, events): (Option<String>, Vec<String>) = self.read(pipe).await?;
        Ok(record.and_then(|json| IncidentRecord::from_json(id, &json, &events)))
    }

    async fn events_after(
        &self,
        after: &str,
        limit: usize,
    ) -> Result<Vec<StreamEvent>, StoreError> {
        let Some(mut after) = parse_stream_id(after) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        // Entries that do not parse are skipped, so read on until `limit` events or the end.
        while out.len() < limit && after != (u64::MAX, u64::MAX) {
            let count = (limit - out.len()).min(READ_CHUNK);
            let start = match after {
                (0, 0) => "-".to_owned(),
                (ms, seq) => format!("({ms}-{seq}"),
            };
            let mut pipe = redis::pipe();
            pipe.cmd("XRANGE")
                .arg(keys::events())
                .arg(start)
                .arg("+")
                .arg("COUNT")
                .arg(count);
            let (reply,): (Value,) = self.read(pipe).await?;
            let entries = stream_entries(reply)?;
            let exhausted = entries.len() < count;
            let (events, last) = stream_events(entries)?;
            out.extend(events);
            if let Some(last) = last {
                after = last;
            }
            if exhausted {
                break;
            }
        }
        Ok(out)
    }

    async fn wait_events(
        &self,
        after: &str,
        limit: usize,
        wait: Duration,
    ) -> Result<StreamRead, StoreError> {
        let Some((ms, seq)) = parse_stream_id(after) else {
            return Ok(StreamRead::default());
        };
        let mut slot = self.blocking.lock().await;
        let mut conn = match slot.take() {
            Some(conn) => conn,
            None => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(CALL_TIMEOUT))
                    .set_response_timeout(Some(wait + CALL_TIMEOUT));
                self.client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map_err(backend_error)?
            }
        };
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(limit.clamp(1, READ_CHUNK))
            .arg("BLOCK")
            .arg(wait.as_millis().max(1) as u64)
            .arg("STREAMS")
            .arg(keys::events())
            .arg(format!("{ms}-{seq}"));
        // A failed connection is dropped (and re-made by the next call).
        let reply: Value = cmd.query_async(&mut conn).await.map_err(backend_error)?;
        *slot = Some(conn);
        drop(slot);
        let entries = match reply {
            Value::Nil => return Ok(StreamRead::default()),
            Value::Array(mut streams) if streams.len() == 1 => {
                let (_, entries): (String, Value) =
                    redis::from_redis_value(streams.remove(0)).map_err(parse_error)?;
                stream_entries(entries)?
            }
            Value::Map(mut streams) if streams.len() == 1 => stream_entries(streams.remove(0).1)?,
            other => {
                return Err(StoreError::Backend(format!(
                    "unexpected XREAD reply {other:?}"
                )));
            }
        };
        let (events, through) = stream_events(entries)?;
        Ok(StreamRead { events, through })
    }

    async fn holds_event(&self, (ms, seq): StreamId) -> Result<bool, StoreError> {
        let id = format!("{ms}-{seq}");
        let mut pipe = redis::pipe();
        pipe.cmd("XRANGE")
            .arg(keys::events())
            .arg(&id)
            .arg(&id)
            .arg("COUNT")
            .arg(1);
        let (entries,): (Vec<Value>,) = self.read(pipe).await?;
        Ok(!entries.is_empty())
    }

    async fn stream_bounds(&self) -> Result<StreamBounds, StoreError> {
        let mut pipe = redis::pipe();
        pipe.exists(keys::events());
        let (exists,): (bool,) = self.read(pipe).await?;
        if !exists {
            return Ok(StreamBounds::default());
        }
        // The stream key is never deleted once made (trimming leaves it, empty).
        let mut pipe = redis::pipe();
        pipe.cmd("XINFO").arg("STREAM").arg(keys::events());
        let (info,): (Value,) = self.read(pipe).await?;
        let last = reply_stream_id(info_field(&info, "last-generated-id")).unwrap_or_default();
        // Everything before the first entry left has been trimmed, if anything was: Redis 7
        // counts the entries ever added (an older Redis does not, and then an id before the
        // first entry counts as trimmed: clients refetch, perhaps needlessly).
        let number = |name: &str| {
            info_field(&info, name).and_then(|v| redis::from_redis_value_ref::<u64>(v).ok())
        };
        let removed = match (number("entries-added"), number("length")) {
            (Some(added), Some(length)) => added > length,
            _ => true,
        };
        let first = match info_field(&info, "first-entry") {
            Some(Value::Array(entry)) => reply_stream_id(entry.first()),
            _ => None,
        };
        // Nothing before the first entry is there: trimmed, or never added to this stream
        // (one made anew by a Redis restarted without its data).
        let trimmed_through = match (removed, first) {
            (true, None) => last,
            (false, None) => (0, 0),
            (_, Some(first)) => super::just_before(first),
        };
        Ok(StreamBounds {
            last,
            trimmed_through,
            trimmed: removed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_before_7_0_are_too_old() {
        let info = |version: &str| {
            format!("# Server\r\nredis_version:{version}\r\nredis_mode:standalone\r\n")
        };
        for (version, old) in [
            ("6.2.14", true),
            ("5.0.7", true),
            ("7.0.15", false),
            ("7.2.4", false),
            ("10.0.0", false),
            ("unstable", false),
        ] {
            assert_eq!(unsupported(&info(version)).is_some(), old, "{version}");
        }
        assert_eq!(unsupported("# Server\r\nvalkey_version:8.0.1\r\n"), None);
        assert_eq!(
            unsupported(&info("6.2.14")).as_deref(),
            Some("Redis 6.2.14 is too old: downradar needs Redis 7.0 or later")
        );
    }

    #[test]
    fn a_cluster_node_or_a_sentinel_is_unsupported() {
        for (mode, says) in [
            ("cluster", "Redis runs as a Cluster node"),
            ("sentinel", "this is a Redis Sentinel"),
        ] {
            let info = format!("# Server\r\nredis_version:7.2.4\r\nredis_mode:{mode}\r\n");
            let why = unsupported(&info).unwrap_or_default();
            assert!(why.starts_with(says), "{mode}: {why}");
        }
    }

    /// Series sums by region or problem read a bucket's fields as `counts` does
    /// (`Cell::parse_field`), though they never build a cell.
    #[test]
    fn sums_match_fields_as_counts_parses_them() {
        let de = RegionCode::parse("DE").unwrap();
        let region = CellFilter {
            region: Some(de),
            problem: None,
        };
        let problem = CellFilter {
            region: None,
            problem: Some("login"),
        };
        for (field, by_region, by_problem) in [
            ("DE:login", true, true),
            ("de:login", true, true),
            ("DE:feed", true, false),
            ("US:login", false, true),
            ("ZZ:login", false, false),
            ("junk", false, false),
            ("DE:", false, false),
            ("DE:Login", false, false),
            (":login", false, false),
            ("DEU:login", false, false),
            ("DE:login:x", false, false),
        ] {
            let parsed = Cell::parse_field(field);
            assert_eq!(
                field_matches(field.as_bytes(), region),
                by_region,
                "{field} by region"
            );
            assert_eq!(
                field_matches(field.as_bytes(), problem),
                by_problem,
                "{field} by problem"
            );
            assert_eq!(
                by_region,
                parsed.as_ref().is_some_and(|c| c.region == de),
                "{field}: as counts reads it"
            );
            assert_eq!(
                by_problem,
                parsed.is_some_and(|c| c.problem.as_str() == "login"),
                "{field}: as counts reads it"
            );
        }
    }
}
