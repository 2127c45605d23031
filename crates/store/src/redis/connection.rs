//! One command connection over standalone Redis or Redis Cluster, and the decoding of replies.

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::{ClusterClientBuilder, ClusterConfig};
use ::redis::cluster_async::ClusterConnection;
use ::redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, Value};

use std::time::Duration;

use crate::model::StoreError;

/// A multiplexed command connection. Clones share the underlying sockets.
#[derive(Clone)]
pub(crate) enum Connection {
    /// One server; reconnects by itself after a failure.
    Standalone(ConnectionManager),
    /// A cluster; follows `MOVED`/`ASK` and refreshes its slot map by itself.
    Cluster(ClusterConnection),
}

impl Connection {
    /// Prepares a connection without connecting: the first command connects, so a gateway can
    /// start (unready) while Redis is down.
    pub(crate) fn open(
        urls: &[String],
        cluster: bool,
        timeout: Duration,
    ) -> Result<Connection, StoreError> {
        if cluster {
            let client = ClusterClientBuilder::new(urls.iter().map(String::as_str))
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .retries(2)
                .build()
                .map_err(config_error)?;
            let config = ClusterConfig::new()
                .set_connection_timeout(timeout)
                .set_response_timeout(timeout);
            Ok(Connection::Cluster(
                client.get_pending_async_connection_with_config(config),
            ))
        } else {
            let url = urls.first().ok_or_else(|| {
                StoreError::Unavailable("invalid store configuration: no Redis URL".to_owned())
            })?;
            let client = ::redis::Client::open(url.as_str()).map_err(config_error)?;
            // Reconnect quickly and keep trying for a few seconds; every operation is bounded
            // by our own timeout anyway, so a pending reconnect never blocks a caller longer.
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_min_delay(Duration::from_millis(10))
                .set_max_delay(Duration::from_millis(250))
                .set_number_of_retries(20);
            let manager =
                ConnectionManager::new_lazy_with_config(client, config).map_err(config_error)?;
            Ok(Connection::Standalone(manager))
        }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Standalone(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Standalone(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Standalone(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

fn config_error(e: RedisError) -> StoreError {
    StoreError::Unavailable(format!("invalid store configuration: {e}"))
}

/// A failed command: the server is unreachable, slow or refused it. A reply we cannot decode
/// means the data is not what we wrote.
pub(crate) fn redis_error(e: RedisError) -> StoreError {
    match e.kind() {
        ErrorKind::UnexpectedReturnType | ErrorKind::Parse => StoreError::Corrupt {
            key: "(reply)".to_owned(),
            reason: e.to_string(),
        },
        _ => StoreError::Unavailable(format!("redis: {e}")),
    }
}

/// A script's reply: an array whose first element names the outcome.
pub(crate) struct Reply {
    what: &'static str,
    items: Vec<Value>,
}

impl Reply {
    pub(crate) fn new(what: &'static str, value: Value) -> Result<Reply, StoreError> {
        match value {
            Value::Array(items) if !items.is_empty() => Ok(Reply { what, items }),
            other => Err(corrupt(what, format!("unexpected reply {other:?}"))),
        }
    }

    /// The outcome word.
    pub(crate) fn outcome(&self) -> Result<String, StoreError> {
        self.text(0)
    }

    pub(crate) fn text(&self, i: usize) -> Result<String, StoreError> {
        self.opt_text(i)?
            .ok_or_else(|| corrupt(self.what, format!("missing element {i}")))
    }

    pub(crate) fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        match self.opt_bytes(i) {
            Some(b) => String::from_utf8(b)
                .map(Some)
                .map_err(|_| corrupt(self.what, format!("element {i} is not UTF-8"))),
            None => Ok(None),
        }
    }

    pub(crate) fn opt_bytes(&self, i: usize) -> Option<Vec<u8>> {
        bytes(self.items.get(i)?)
    }

    pub(crate) fn int(&self, i: usize) -> Result<i64, StoreError> {
        self.items
            .get(i)
            .and_then(int)
            .ok_or_else(|| corrupt(self.what, format!("element {i} is not an integer")))
    }
}

pub(crate) fn bytes(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        Value::Int(n) => Some(n.to_string().into_bytes()),
        _ => None,
    }
}

pub(crate) fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

/// The field/value pairs of a `HGETALL` reply (RESP2 flat array or RESP3 map).
pub(crate) fn pairs(value: Value) -> Vec<(Vec<u8>, Vec<u8>)> {
    match value {
        Value::Map(entries) => entries
            .iter()
            .filter_map(|(k, v)| Some((bytes(k)?, bytes(v)?)))
            .collect(),
        Value::Array(items) => items
            .chunks_exact(2)
            .filter_map(|kv| Some((bytes(&kv[0])?, bytes(&kv[1])?)))
            .collect(),
        _ => Vec::new(),
    }
}

pub(crate) fn corrupt(key: &str, reason: String) -> StoreError {
    StoreError::Corrupt {
        key: key.to_owned(),
        reason,
    }
}
