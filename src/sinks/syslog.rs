//! `syslog` (being built).

#![allow(unused_variables)]

use super::{Answer, Sending, Sink, SinkProblem};
use crate::config::Endpoint;
use crate::events::outbox::Stored;
#[allow(unused_imports)]
use crate::model::SinkSpec;

pub struct Syslog;

impl Syslog {
    pub fn new(spec: &SinkSpec, endpoint: &Endpoint) -> Result<Syslog, SinkProblem> {
        Err(SinkProblem("syslog sinks are not built yet".to_owned()))
    }
}

impl Sink for Syslog {
    fn batch_size(&self) -> usize {
        1
    }

    fn send<'a>(&'a mut self, _events: &'a [Stored]) -> Sending<'a> {
        Box::pin(async move {
            Answer::Rejected {
                answer: String::new(),
            }
        })
    }
}
