//! `splunk_hec` (being built).

#![allow(unused_variables)]

use super::{Answer, Sending, Sink, SinkProblem};
use crate::config::Endpoint;
use crate::events::outbox::Stored;
#[allow(unused_imports)]
use crate::model::SinkSpec;

pub struct SplunkHec;

impl SplunkHec {
    pub fn new(name: &str, spec: &SinkSpec, endpoint: &Endpoint) -> Result<SplunkHec, SinkProblem> {
        Err(SinkProblem("splunk_hec sinks are not built yet".to_owned()))
    }
}

impl Sink for SplunkHec {
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
