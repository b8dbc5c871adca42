//! `servicenow`: tickets as ServiceNow records.

use crate::config::Endpoint;
use crate::model::ServiceNowSettings;
use crate::sinks::SinkProblem;

pub struct ServiceNow;

impl ServiceNow {
    pub fn new(
        _settings: &ServiceNowSettings,
        _endpoint: &Endpoint,
    ) -> Result<ServiceNow, SinkProblem> {
        Err(SinkProblem("servicenow is being built".to_owned()))
    }
}

fn not_yet<'a, T: Send + 'a>() -> crate::tickets::Call<'a, T> {
    Box::pin(async {
        Err(crate::tickets::Failure::Refused {
            answer: "not built".to_owned(),
        })
    })
}

impl crate::tickets::TicketSystem for ServiceNow {
    fn prepare(&mut self) -> crate::tickets::Call<'_, ()> {
        not_yet()
    }
    fn find<'a>(&'a self, _: &'a str) -> crate::tickets::Call<'a, Option<crate::tickets::Ticket>> {
        not_yet()
    }
    fn create<'a>(
        &'a self,
        _: &'a crate::tickets::Problem,
    ) -> crate::tickets::Call<'a, crate::tickets::Ticket> {
        not_yet()
    }
    fn update<'a>(
        &'a self,
        _: &'a crate::tickets::Ticket,
        _: &'a crate::tickets::Problem,
        _: &'a crate::tickets::Note,
    ) -> crate::tickets::Call<'a, ()> {
        not_yet()
    }
    fn resolve<'a>(
        &'a self,
        _: &'a crate::tickets::Ticket,
        _: &'a crate::tickets::Note,
    ) -> crate::tickets::Call<'a, crate::tickets::Ticket> {
        not_yet()
    }
    fn reopen<'a>(
        &'a self,
        _: &'a crate::tickets::Ticket,
        _: &'a crate::tickets::Problem,
        _: &'a crate::tickets::Note,
    ) -> crate::tickets::Call<'a, crate::tickets::Ticket> {
        not_yet()
    }
    fn observe<'a>(
        &'a self,
        _: &'a [String],
    ) -> crate::tickets::Call<'a, Vec<crate::tickets::Ticket>> {
        not_yet()
    }
    fn requests(&self) -> u64 {
        0
    }
}
