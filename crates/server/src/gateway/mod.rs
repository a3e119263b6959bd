//! The gateway (real time): the sockets of this api instance (`hub`) and the task that pushes every applied change
//! to them (`fanout`). The WebSocket endpoint itself is in `api::ws`.

pub mod fanout;
pub mod hub;

pub use hub::{Frame, Hub, HubLimits, Refused, Registration};
