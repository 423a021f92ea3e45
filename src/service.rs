//! The finalize service: the one finalize, whoever asked for it.
//!
//! Delivery hands [`FinalizeService::finalize`] a [`FinalizeRequest`] with its
//! [`Invocation`]'s facts — from a caller now (sync mode) or from a queued message (the worker)
//! — and gets back one [`Outcome`]. The service reads the token, calls HighLevel with the
//! contract's retries, and knows nothing of HTTP events, records, response bodies or log
//! lines.

use std::future::Future;
use std::time::Duration;

use crate::error::Error;
use crate::highlevel::import::{more_to_read, PAGE_SIZE};
use crate::highlevel::{
    self, attempts, CsvPage, Exchange, FinalizeCall, HighLevel, Import, Outcome,
};
use crate::request::deadline::unix_ms;
use crate::request::deadline::Budget;
use crate::request::ids::LocationId;
use crate::request::{FinalizeRequest, Invocation};
use crate::tokens::{LeasedToken, TokenSource};

/// What delivery asks of a finalize: the [`FinalizeService`], or — in the delivery
/// simulation's tests — a simulated HighLevel that applies, loses and refuses PATCHes as a seed
/// says.
pub(crate) trait Finalizer {
    /// `UPSTREAM_TIMEOUT_MS`: how long a finalize may take once HighLevel is called.
    fn upstream_timeout(&self) -> Duration;

    /// Whether HighLevel is never called (`--dry-run`).
    fn dry_run(&self) -> bool;

    /// The budget for one finalize's HighLevel calls (the CSV reads included), within the
    /// invocation's deadline.
    fn budget(&self, invocation: &Invocation) -> Budget {
        Budget::new(self.upstream_timeout(), invocation.deadline)
    }

    /// The import's status at HighLevel, read once within `budget`; `None` when it cannot be
    /// had — which never stops a finalize.
    fn csv_status(
        &self,
        request: &FinalizeRequest,
        budget: &Budget,
    ) -> impl Future<Output = Option<String>>;

    /// Finalizes the import `request` names, its HighLevel calls within `budget`.
    fn finalize_within(
        &self,
        request: &FinalizeRequest,
        budget: &Budget,
    ) -> impl Future<Output = Outcome>;

    /// The import `request` finalized, as HighLevel shows it now (its pages read within
    /// `budget`), `earlier` being what was seen before; `None` when it cannot be had.
    fn read_import(
        &self,
        request: &FinalizeRequest,
        budget: &Budget,
        earlier: Option<&Import>,
    ) -> impl Future<Output = Option<Import>> {
        let _ = (request, budget, earlier);
        async { None }
    }

    /// The app was uninstalled at `location` (at `when`, RFC 3339): its token ends. True when
    /// a token was ended.
    fn uninstall(
        &self,
        location: &LocationId,
        when: &str,
    ) -> impl Future<Output = Result<bool, Error>> {
        let _ = (location, when);
        async { Ok(false) }
    }

    /// Stores the pair an install brought where the token source keeps such a pair; `None`
    /// when it has nowhere for it.
    fn install(
        &self,
        pair: &crate::install::InstalledPair,
    ) -> impl Future<Output = Result<Option<()>, Error>> {
        let _ = pair;
        async { Ok(None) }
    }

    /// Finalizes the import `request` names, within the invocation's deadline.
    fn finalize(
        &self,
        request: &FinalizeRequest,
        invocation: &Invocation,
    ) -> impl Future<Output = Outcome> {
        async move {
            let budget = self.budget(invocation);
            self.finalize_within(request, &budget).await
        }
    }
}

/// The settings and clients a finalize needs, built once per instance.
pub(crate) struct FinalizeService {
    tokens: TokenSource,
    highlevel: HighLevel,
    upstream_timeout: Duration,
    max_attempts: u32,
    dry_run: bool,
}

impl FinalizeService {
    /// A service over these clients: each finalize may take `upstream_timeout`
    /// (`UPSTREAM_TIMEOUT_MS`) once HighLevel is called, and `max_attempts` (`MAX_ATTEMPTS`);
    /// a `dry_run` stops short of calling HighLevel.
    pub(crate) fn new(
        tokens: TokenSource,
        highlevel: HighLevel,
        upstream_timeout: Duration,
        max_attempts: u32,
        dry_run: bool,
    ) -> Self {
        Self {
            tokens,
            highlevel,
            upstream_timeout,
            max_attempts,
            dry_run,
        }
    }
}

impl FinalizeService {
    /// What a CSV read needs: the location's token, and the CSV's URL (the finalize call's).
    async fn csv_reader(
        &self,
        request: &FinalizeRequest,
        budget: &Budget,
    ) -> Option<(LeasedToken, FinalizeCall)> {
        let token = self.tokens.token(&request.location_id, budget).await.ok()?;
        let call = self
            .highlevel
            .finalize_call(
                &request.location_id,
                &request.csv_id,
                request.user_id.as_ref(),
            )
            .ok()?;
        Some((token, call))
    }
}

impl Finalizer for FinalizeService {
    fn upstream_timeout(&self) -> Duration {
        self.upstream_timeout
    }

    async fn uninstall(&self, location: &LocationId, when: &str) -> Result<bool, Error> {
        self.tokens.uninstall(location, when).await
    }

    async fn install(&self, pair: &crate::install::InstalledPair) -> Result<Option<()>, Error> {
        self.tokens.install(pair).await
    }

    fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// The import's status at HighLevel (`GET …/csv/{csvId}?skip=0&limit=1`), read once within
    /// `budget`; `None` when it cannot be had (no token, an error, a timeout, an odd answer) —
    /// which never stops a finalize.
    async fn csv_status(&self, request: &FinalizeRequest, budget: &Budget) -> Option<String> {
        let location = &request.location_id;
        let (token, call) = self.csv_reader(request, budget).await?;
        let headers = self.highlevel.headers(token.token.bearer());
        match self
            .highlevel
            .read_csv(&call, headers, (0, 1), budget.deadline())
            .await
        {
            Exchange::Answered { reply, .. } => {
                let status = highlevel::csv_status(&reply);
                if status.is_none() {
                    tracing::warn!(location_id = %location, csv_id = %request.csv_id, status = reply.status, "HighLevel's CSV read gave no status");
                }
                status
            }
            other => {
                tracing::warn!(location_id = %location, csv_id = %request.csv_id, exchange = ?other, "the CSV could not be read");
                None
            }
        }
    }

    /// Reads the import page by page (`?skip=N&limit=100`, up to a thousand posts); a page
    /// that cannot be read ends the reading with what was read, and a first one, with nothing.
    async fn read_import(
        &self,
        request: &FinalizeRequest,
        budget: &Budget,
        earlier: Option<&Import>,
    ) -> Option<Import> {
        let location = &request.location_id;
        let (token, call) = self.csv_reader(request, budget).await?;
        let mut pages: Vec<CsvPage> = Vec::new();
        loop {
            let skip = pages.len() as u64 * PAGE_SIZE;
            let headers = self.highlevel.headers(token.token.bearer());
            let exchange = self
                .highlevel
                .read_csv(&call, headers, (skip, PAGE_SIZE), budget.deadline())
                .await;
            let page = match exchange {
                Exchange::Answered { reply, .. } => CsvPage::from_reply(&reply),
                _ => None,
            };
            match page {
                Some(page) => pages.push(page),
                None => {
                    tracing::warn!(location_id = %location, csv_id = %request.csv_id, skip, "a page of the CSV could not be read");
                    break;
                }
            }
            if !more_to_read(&pages) {
                break;
            }
        }
        Import::from_pages(&pages, unix_ms(), earlier)
    }

    /// Finalizes the import `request` names, its HighLevel calls within `budget`.
    async fn finalize_within(&self, request: &FinalizeRequest, budget: &Budget) -> Outcome {
        let location = &request.location_id;
        let token = match self.tokens.token(location, budget).await {
            Ok(token) => token,
            Err(error) => return Outcome::not_sent(error),
        };
        let call =
            match self
                .highlevel
                .finalize_call(location, &request.csv_id, request.user_id.as_ref())
            {
                Ok(call) => call,
                Err(error) => return Outcome::not_sent(error),
            };
        if self.dry_run {
            let headers = self.highlevel.headers(token.token.bearer());
            return Outcome::DryRun {
                would_send: highlevel::describe(&call, &headers),
            };
        }
        let reauthenticate = || async {
            let fresh = self.tokens.reload(location, &token, budget).await?;
            Ok(fresh.token.bearer())
        };
        attempts::finalize(
            &self.highlevel,
            &call,
            token.token.bearer(),
            budget,
            self.max_attempts,
            reauthenticate,
        )
        .await
    }
}
