//! Code deliveries: one row per message handed to a gateway, and every
//! status the gateway reported for it with its time, so operators can see
//! whether codes arrive and how fast. Never the message text (it carries
//! the code) and never the full number.

use rusqlite::{params, OptionalExtension};

use super::{Store, StoreError};

/// Where a message is on its way to the phone (Twilio's statuses, which
/// other gateways map onto).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// The gateway accepted it and has not sent it yet.
    Queued,
    /// Handed to the carrier.
    Sent,
    /// The carrier reports it reached the phone.
    Delivered,
    /// The carrier could not deliver it.
    Undelivered,
    /// The gateway could not send it.
    Failed,
    /// A code call: the callee answered and heard the code.
    Answered,
    /// A code call: the callee was busy (486, 600).
    Busy,
    /// A code call: nobody answered within the answer timeout (or 408/480).
    NoAnswer,
    /// A code call torn down by us because the inbound caller hung up
    /// (cancelled while ringing, or hung up while the code was read).
    Cancelled,
}

impl DeliveryStatus {
    /// Every status, in the order a message passes them.
    pub const ALL: [DeliveryStatus; 9] = [
        DeliveryStatus::Queued,
        DeliveryStatus::Sent,
        DeliveryStatus::Delivered,
        DeliveryStatus::Undelivered,
        DeliveryStatus::Failed,
        DeliveryStatus::Answered,
        DeliveryStatus::Busy,
        DeliveryStatus::NoAnswer,
        DeliveryStatus::Cancelled,
    ];

    /// The stored (and Twilio's) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Undelivered => "undelivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Answered => "answered",
            DeliveryStatus::Busy => "busy",
            DeliveryStatus::NoAnswer => "no_answer",
            DeliveryStatus::Cancelled => "cancelled",
        }
    }

    /// The status spelled `s` (Twilio's `accepted`, `sending`, `scheduled`
    /// count as queued/sent); `None` for anything else.
    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        Some(match s {
            "queued" | "accepted" | "scheduled" => DeliveryStatus::Queued,
            "sent" | "sending" => DeliveryStatus::Sent,
            "delivered" | "read" => DeliveryStatus::Delivered,
            "undelivered" => DeliveryStatus::Undelivered,
            "failed" | "canceled" => DeliveryStatus::Failed,
            _ => return None,
        })
    }

    /// No later status is expected.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            DeliveryStatus::Delivered
                | DeliveryStatus::Undelivered
                | DeliveryStatus::Failed
                | DeliveryStatus::Answered
                | DeliveryStatus::Busy
                | DeliveryStatus::NoAnswer
                | DeliveryStatus::Cancelled
        )
    }
}

/// A message handed to a gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDelivery<'a> {
    /// The code it carries (its id, never the code).
    pub code_id: Option<&'a str>,
    /// `sms` (voice and e-mail next).
    pub channel: &'a str,
    /// The gateway's name in the config.
    pub gateway: &'a str,
    /// The gateway's id for the message, when it gave one.
    pub message_id: Option<&'a str>,
    /// The destination, masked.
    pub to_masked: &'a str,
    /// The status the gateway answered the send with.
    pub status: DeliveryStatus,
    /// The gateway's error, when it gave one.
    pub error: Option<&'a str>,
    /// When (milliseconds since the Unix epoch).
    pub at_ms: i64,
}

/// What [`Store::record_delivery_status`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusRecorded {
    /// The call that sent the code (`None` once the code is purged).
    pub call_id: Option<String>,
}

/// A delivery as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Row id.
    pub id: i64,
    /// The code's id.
    pub code_id: Option<String>,
    /// Channel.
    pub channel: String,
    /// Gateway name.
    pub gateway: String,
    /// The gateway's message id.
    pub message_id: Option<String>,
    /// Destination, masked.
    pub to_masked: String,
    /// The latest status.
    pub status: String,
    /// The latest error, if any.
    pub error: Option<String>,
    /// Created (ms).
    pub created_at: i64,
    /// Last status change (ms).
    pub updated_at: i64,
    /// Every status reported, with its time (ms), oldest first.
    pub history: Vec<(String, i64)>,
    /// A code call's length from answer to hang-up (ms); `None` otherwise.
    pub duration_ms: Option<i64>,
}

impl Store {
    /// Record a message handed to a gateway; returns its row id.
    pub fn add_delivery(&self, d: &NewDelivery<'_>) -> Result<i64, StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO deliveries (code_id, channel, gateway, message_id, to_masked, status, error, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
                params![d.code_id, d.channel, d.gateway, d.message_id, d.to_masked, d.status.as_str(), d.error, d.at_ms],
            )?;
            let id = tx.last_insert_rowid();
            tx.execute(
                "INSERT INTO delivery_statuses (delivery_id, status, error, at) VALUES (?1, ?2, ?3, ?4)",
                params![id, d.status.as_str(), d.error, d.at_ms],
            )?;
            tx.commit()?;
            Ok(id)
        })
    }

    /// Record a status a gateway reported for its message `message_id`;
    /// `None` when no such delivery is known, else the call that sent the
    /// code (while the code is kept). A final status is not
    /// overwritten by a late earlier one (callbacks can arrive out of
    /// order), but every report is kept in the history.
    pub fn record_delivery_status(
        &self,
        gateway: &str,
        message_id: &str,
        status: DeliveryStatus,
        error: Option<&str>,
        at_ms: i64,
    ) -> Result<Option<StatusRecorded>, StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            let row: Option<(i64, String, Option<String>)> = tx
                .query_row(
                    "SELECT d.id, d.status, c.call_id FROM deliveries d
                     LEFT JOIN codes c ON c.id = d.code_id
                     WHERE d.gateway = ?1 AND d.message_id = ?2",
                    params![gateway, message_id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let Some((id, current, call_id)) = row else {
                return Ok(None);
            };
            tx.execute(
                "INSERT INTO delivery_statuses (delivery_id, status, error, at) VALUES (?1, ?2, ?3, ?4)",
                params![id, status.as_str(), error, at_ms],
            )?;
            let current_final = DeliveryStatus::parse(&current).is_some_and(DeliveryStatus::is_final);
            if !current_final || status.is_final() {
                tx.execute(
                    "UPDATE deliveries SET status = ?2, error = COALESCE(?3, error), updated_at = ?4 WHERE id = ?1",
                    params![id, status.as_str(), error, at_ms],
                )?;
            }
            tx.commit()?;
            Ok(Some(StatusRecorded { call_id }))
        })
    }

    /// The deliveries of a code, oldest first.
    pub fn deliveries_of_code(&self, code_id: &str) -> Result<Vec<Delivery>, StoreError> {
        self.deliveries_where("code_id = ?1", params![code_id])
    }

    /// Record a code call's length (answer to hang-up) on its delivery row.
    pub fn set_delivery_duration(&self, id: i64, duration_ms: i64) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE deliveries SET duration_ms = ?2 WHERE id = ?1",
                params![id, duration_ms],
            )?;
            Ok(())
        })
    }

    /// The latest status of a gateway's message and its error (what a
    /// delivery receipt said), `None` when no such delivery is known.
    pub fn delivery_status(
        &self,
        gateway: &str,
        message_id: &str,
    ) -> Result<Option<(String, Option<String>)>, StoreError> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT status, error FROM deliveries WHERE gateway = ?1 AND message_id = ?2",
                params![gateway, message_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
        })
    }

    /// The delivery of a gateway's message.
    pub fn delivery_by_message(
        &self,
        gateway: &str,
        message_id: &str,
    ) -> Result<Option<Delivery>, StoreError> {
        let all = self.deliveries_where(
            "gateway = ?1 AND message_id = ?2",
            params![gateway, message_id],
        )?;
        Ok(all.into_iter().next())
    }

    fn deliveries_where(
        &self,
        cond: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<Delivery>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT id, code_id, channel, gateway, message_id, to_masked, status, error, created_at, updated_at, duration_ms
                 FROM deliveries WHERE {cond} ORDER BY id"
            ))?;
            let mut out: Vec<Delivery> = st
                .query_map(args, |r| {
                    Ok(Delivery {
                        id: r.get(0)?,
                        code_id: r.get(1)?,
                        channel: r.get(2)?,
                        gateway: r.get(3)?,
                        message_id: r.get(4)?,
                        to_masked: r.get(5)?,
                        status: r.get(6)?,
                        error: r.get(7)?,
                        created_at: r.get(8)?,
                        updated_at: r.get(9)?,
                        history: Vec::new(),
                        duration_ms: r.get(10)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            let mut hs = c.prepare(
                "SELECT status, at FROM delivery_statuses WHERE delivery_id = ?1 ORDER BY at, rowid",
            )?;
            for d in &mut out {
                d.history = hs
                    .query_map([d.id], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?;
            }
            Ok(out)
        })
    }
}
