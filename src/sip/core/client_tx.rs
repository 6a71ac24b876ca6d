//! Client transactions: requests we send and retransmit until answered
//! (RFC 3261 17.1). Today that is the BYE of a dialog we end (non-INVITE,
//! 17.1.2). The UAC side joins here: outbound INVITE (17.1.1, for calls we
//! place and the voice channel of codes) and REFER (transfer), each with
//! its own state beside this one, sharing `retransmit`.

use std::time::Instant;

use rsipstack::sip::Response;

use super::retransmit::Retransmit;
use super::{Core, CoreEvent, EndReason};
use crate::sip::msg::{self, via_param};

/// A non-INVITE request we sent, until its final response or Timer F.
#[derive(Debug)]
pub(super) struct ClientTx {
    pub(super) branch: String,
    pub(super) data: Vec<u8>,
    pub(super) retx: Retransmit,
}

impl Core {
    /// Feed a response that passed the wire layer: those of our REFERs
    /// (`refer`), of the INVITEs and CANCELs of calls we placed (`uac`), and
    /// the answer to a BYE we sent (a final one ends the dialog); others are
    /// ignored.
    pub fn handle_response(&mut self, now: Instant, resp: &Response) {
        // Every response we act on is found by its Call-ID.
        if let Some(call) = msg::resp_header(resp, "Call-ID") {
            self.timers.touch(call);
        }
        if self.refer_response(resp) {
            return;
        }
        // Before the legs: a leg lingers after its answer, and would take
        // a re-INVITE's response for a stray one of its INVITE.
        if self.reinvite_response(now, resp) {
            return;
        }
        if self.uac_response(now, resp) {
            return;
        }
        let Some(via) = msg::resp_header(resp, "Via") else {
            return;
        };
        let Some(branch) = via_param(via, "branch") else {
            return;
        };
        let Some(call) = msg::resp_header(resp, "Call-ID").map(str::to_string) else {
            return;
        };
        let status = u16::from(resp.status_code.clone());
        let Some(d) = self.dialogs.get_mut(&call) else {
            return;
        };
        let Some(bye) = d.bye.as_mut() else { return };
        if bye.branch != branch {
            return;
        }
        if status < 200 {
            bye.retx.stop_resending(); // provisional: keep Timer F only
            return;
        }
        self.dialogs.remove(&call);
        self.emit(CoreEvent::Ended {
            call,
            reason: EndReason::LocalHangup,
        });
    }
}
