//! The HTTP front: Lambda HTTP events and the local server, on one handler.
//!
//! [`HttpFront::answer`] runs the contract's checks in order — method (405), body size (413),
//! authentication (401), content type (415), body, fields and idempotency key (400) — hands a
//! [`FinalizeRequest`] and its [`IdempotencyKey`] to [`Delivery`] (which runs, replays or
//! queues it), and turns what happened into the response and the request's audit line, each in
//! one place. The status route
//! (`GET …/finalizations/{id}`) is checked the same way and reads a record.
//!
//! - [`event`]: Lambda HTTP events to `http::Request` and back, in each origin's format.
//! - [`inbound`]: pure parsing of method, path, query string and body.
//! - [`response`]: the contract's JSON envelope.

pub mod app_webhook;
pub mod event;
pub mod inbound;
pub mod response;

use std::sync::Arc;
use std::time::Instant;

use http::Method;
use lambda_http::{Body, Request, RequestExt, Response};

use crate::auth::{Credential, InboundAuth, Proof};
use crate::delivery::{Delivered, Delivery, Receipt};
use crate::error::{chain, Error};
use crate::install::{self, Answer, Install, Installed};
use crate::observe::{Audit, Measures, Mode, Observer};
use crate::records::{FinalizationId, Record};
use crate::request::app_event::{AppEvent, AppEventKind};
use crate::request::callback::CallbackUrl;
use crate::request::deadline::Deadline;
use crate::request::ids::UserId;
use crate::request::key::{IdempotencyKey, KeyKind};
use crate::request::{FinalizeRequest, Invocation};
use app_webhook::{Acted, AppWebhooks};
use event::{Caller, InvalidBase64Body, MalformedEvent, PathParams};
use inbound::{BodyKind, Route, Sources};

/// A request that passed the checks.
enum Accepted {
    /// `GET …/healthz`.
    Health,
    /// A finalize request, with its idempotency key when records are kept and its completion
    /// callback, if it has one.
    Finalize(FinalizeRequest, Option<IdempotencyKey>, Option<CallbackUrl>),
    /// `GET …/finalizations/{id}` by a caller who may see the locations it may act for; with
    /// `?refresh=true`, the import read from HighLevel now.
    Lookup(FinalizationId, bool),
    /// One of HighLevel's app webhooks, its signature good.
    AppEvent(AppEvent),
    /// `GET …/oauth/install` or `GET …/oauth/callback`.
    Install,
}

/// The checks in front of delivery, and what they need.
pub(crate) struct HttpFront {
    auth: Arc<InboundAuth>,
    default_user_id: Option<UserId>,
    requires_user_id: bool,
    app_webhooks: Option<AppWebhooks>,
    install: Option<Install>,
}

/// What the front did with one request.
enum Handled {
    /// `GET …/healthz`.
    Health,
    /// A check refused the request before delivery saw it.
    Refused(Error),
    /// Delivery handled it.
    Finalize(FinalizeRequest, Receipt),
    /// The status route found the record.
    Found(Record),
    /// An app webhook was acted on.
    AppEvent(Acted),
    /// An install route answered.
    Install(Answer),
}

impl HttpFront {
    /// A front authenticating with `auth`, sending `default_user_id` when a caller names none;
    /// with `requires_user_id` (HighLevel's API `v3`) a finalize without one is a 400.
    pub(crate) fn new(
        auth: Arc<InboundAuth>,
        default_user_id: Option<UserId>,
        requires_user_id: bool,
        app_webhooks: Option<AppWebhooks>,
        install: Option<Install>,
    ) -> Self {
        Self {
            auth,
            default_user_id,
            requires_user_id,
            app_webhooks,
            install,
        }
    }

    /// Whether callers are authenticated.
    pub(crate) fn authenticates(&self) -> bool {
        !matches!(*self.auth, InboundAuth::Disabled)
    }

    /// Answers one request through `delivery`, writing its audit line through `observer`.
    /// Never fails: every outcome is a response.
    pub(crate) async fn answer(
        &self,
        delivery: &Delivery,
        observer: &Observer,
        request: Request,
    ) -> Response<Body> {
        let started = Instant::now();
        let invocation = Invocation::of(request.lambda_context_ref());
        let mut credential = None;
        let handled = match self
            .accept(&request, delivery, invocation.deadline, &mut credential)
            .await
        {
            Ok(Accepted::Health) => Handled::Health,
            Ok(Accepted::Finalize(finalize, key, callback)) => {
                let receipt = delivery
                    .submit(&finalize, key.as_ref(), callback, &invocation)
                    .await;
                Handled::Finalize(finalize, receipt)
            }
            Ok(Accepted::Lookup(id, refresh)) => {
                let caller = credential.as_ref();
                let may_see = |location: &_| caller.is_none_or(|c| c.allows(location));
                let refresh = refresh.then_some(&invocation);
                match delivery.lookup(&id, may_see, refresh).await {
                    Ok(record) => Handled::Found(record),
                    Err(error) => Handled::Refused(error),
                }
            }
            Ok(Accepted::AppEvent(event)) => match &self.app_webhooks {
                Some(webhooks) => match webhooks.act(delivery, &event).await {
                    Ok(acted) => Handled::AppEvent(acted),
                    Err(error) => Handled::Refused(error),
                },
                None => Handled::Refused(Error::NotFound),
            },
            Ok(Accepted::Install) => match &self.install {
                Some(install) => Handled::Install(
                    install_answer(install, delivery, &request, invocation.deadline).await,
                ),
                None => Handled::Refused(Error::NotFound),
            },
            Err(error) => Handled::Refused(error),
        };
        let request_id = invocation.request_id.as_str();
        let response = match &handled {
            Handled::Health => response::health(request_id),
            Handled::Refused(error) => response::error(error, 0, None, request_id),
            Handled::Finalize(finalize, receipt) => {
                response::receipt(finalize, receipt, request_id)
            }
            Handled::Found(record) => response::finalization(record, request_id),
            Handled::AppEvent(acted) => response::app_event(*acted == Acted::Duplicate, request_id),
            Handled::Install(answer) => response::install(answer),
        };
        let caller = request.extensions().get::<Caller>();
        let audit = Audit {
            request_id: invocation.request_id.clone(),
            mode: Some(if delivery.queues() {
                Mode::Queue
            } else {
                Mode::Sync
            }),
            credential: credential.map_or_else(|| "none".to_owned(), |c| c.name),
            webhook_id: webhook_id(request.headers()),
            source_ip: caller.and_then(|c| c.source_ip.clone()),
            user_agent: caller.and_then(|c| c.user_agent.clone()),
            status: response.status().as_u16(),
            duration_ms: started.elapsed().as_millis() as u64,
            ..Audit::default()
        };
        observe(observer, audit, &handled);
        response
    }

    /// The contract's checks, in its order: method (405), body size (413), authentication
    /// (401), content type (415), body, fields and idempotency key (400), the credential's
    /// locations (403). The credential that authenticated the caller is left in `credential`,
    /// for the log and the status route.
    async fn accept(
        &self,
        request: &Request,
        delivery: &Delivery,
        deadline: Deadline,
        credential: &mut Option<Credential>,
    ) -> Result<Accepted, Error> {
        if let Some(malformed) = request.extensions().get::<MalformedEvent>() {
            let allowed = matches!(*request.method(), Method::POST | Method::GET);
            return Err(if malformed.bad_method || !allowed {
                Error::MethodNotAllowed
            } else {
                Error::invalid_body(malformed.problem.clone())
            });
        }
        if self.install.is_some() && request.method() == Method::GET {
            // Public: the installer's browser comes here, and HighLevel sends it back.
            let path = request.uri().path();
            if path.ends_with(install::INSTALL_PATH) || path.ends_with(install::CALLBACK_PATH) {
                return Ok(Accepted::Install);
            }
        }
        let route = inbound::route(request.method(), request.uri().path())?;
        if route == Route::Health {
            return Ok(Accepted::Health);
        }
        let body = request.body().as_ref();
        inbound::check_body_size(body)?;
        if let Some(webhooks) = &self.app_webhooks {
            // Signed by HighLevel with its own key, not by one of the inbound credentials.
            let path = request.uri().path();
            if request.method() == Method::POST && path.ends_with(app_webhook::APP_WEBHOOK_PATH) {
                return webhooks
                    .check(request.headers(), body)
                    .map(Accepted::AppEvent);
            }
        }
        let caller = credential.insert(
            self.auth
                .authenticate(request.headers(), body, deadline)
                .await?,
        );
        if let Route::Finalization(id) = route {
            // An id that is not one of ours names no record.
            let refresh = inbound::wants_refresh(request.uri().query());
            return FinalizationId::parse(id)
                .map(|id| Accepted::Lookup(id, refresh))
                .ok_or(Error::NotFound);
        }
        if request.extensions().get::<InvalidBase64Body>().is_some() {
            return Err(Error::invalid_body(
                "the event's body is marked base64 but is not valid base64",
            ));
        }
        let kind = inbound::body_kind(request.headers().get(http::header::CONTENT_TYPE), body)?;
        if caller.proof == Proof::Signature && kind == BodyKind::Form {
            // The signature covers the body, not the Content-Type that decides how it is
            // read: signed bytes are read as JSON only, or a signed JSON body could be replayed
            // as a form whose fields it smuggled in a string.
            return Err(Error::UnsupportedMediaType);
        }
        let params: Vec<(&str, &str)> = request
            .extensions()
            .get::<PathParams>()
            .map(|p| p.0.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect())
            .unwrap_or_default();
        let sources = Sources {
            path_params: &params,
            path: request.uri().path(),
            query: request.uri().query(),
            body,
            kind,
        };
        let mut finalize = match caller.proof {
            Proof::Signature => inbound::parse_signed(sources)?,
            Proof::ApiKey | Proof::None => inbound::parse(sources)?,
        };
        if finalize.user_id.is_none() {
            finalize.user_id = self.default_user_id.clone();
        }
        if self.requires_user_id && finalize.user_id.is_none() {
            // Before any token is read: HighLevel's v3 would refuse the PATCH.
            return Err(Error::invalid_field(
                UserId::FIELD,
                "HighLevel's API v3 needs a userId: send one, or set GHL_DEFAULT_USER_ID",
            ));
        }
        let key = delivery
            .keeps_records()
            .then(|| inbound::idempotency_key(&finalize, request.headers()))
            .transpose()?;
        let signed = caller.proof == Proof::Signature;
        let requested = inbound::callback_url(body, kind, request.headers(), signed)?;
        let callback = delivery
            .admit_callback(requested.as_deref(), caller, deadline)
            .await?;
        if !caller.allows(&finalize.location_id) {
            return Err(Error::CredentialNotAllowed(finalize.location_id));
        }
        Ok(Accepted::Finalize(finalize, key, callback))
    }
}

/// Begins an install, or finishes one: the pair stored where it belongs, and the page that
/// says what was connected (never a token).
async fn install_answer(
    install: &Install,
    delivery: &Delivery,
    request: &Request,
    deadline: Deadline,
) -> Answer {
    if request.uri().path().ends_with(install::INSTALL_PATH) {
        return install.begin(deadline).await;
    }
    let pair = match install.finish(request.uri().query(), deadline).await {
        Ok(pair) => pair,
        Err(answer) => return answer,
    };
    let (title, connected) = match &pair.installed {
        Installed::Company => (
            "Agency connected",
            "The agency is connected: every sub-account where the app is installed can be finalized now.".to_owned(),
        ),
        Installed::Location(location) => (
            "Location connected",
            format!("The location {location} is connected."),
        ),
    };
    match delivery.install(&pair).await {
        Ok(Some(())) => {
            tracing::info!(connected, "an install stored its pair");
            Answer::Page(200, install::page::page(title, &connected))
        }
        Ok(None) => Answer::Page(
            400,
            install::page::page(
                "Not connected",
                "This deployment keeps no pair of this kind (an agency pair needs GHL_AGENCY_SECRET_ID; a location's, a secret per location or a map in GHL_TOKEN_SECRET_ID). Nothing was stored.",
            ),
        ),
        Err(error) => {
            tracing::error!(code = error.code(), cause = %chain(&error), "an install's pair could not be stored");
            Answer::Page(
                503,
                install::page::page(
                    "Not connected",
                    "The pair could not be stored now: begin the install again shortly.",
                ),
            )
        }
    }
}

/// The `webhook-id` header for the audit line, when it is a plausible id (1–255 visible ASCII
/// characters); anything else is left out rather than written to the log.
fn webhook_id(headers: &http::HeaderMap) -> Option<String> {
    let id = headers.get("webhook-id")?.to_str().ok()?;
    IdempotencyKey::parse(KeyKind::WebhookId, id).map(|key| key.as_str().to_owned())
}

/// The request's audit line and metrics (who asked — the credential's name, never the
/// credential —, what, what came of it, how long it took), and for a server-side failure its
/// cause in the log.
fn observe(observer: &Observer, mut audit: Audit, handled: &Handled) {
    let mut measures = Measures::default();
    let error = match handled {
        Handled::Health => None,
        Handled::Refused(error) => Some(error),
        Handled::Install(_) => {
            audit.credential = "install".into();
            None
        }
        Handled::AppEvent(acted) => {
            audit.credential = "highlevel-app".into();
            measures.app_installs =
                u64::from(matches!(acted, Acted::Done(AppEventKind::Install, _)));
            None
        }
        Handled::Found(record) => {
            audit.finalization_id = Some(record.id.as_str().to_owned());
            audit.location_id = Some(record.location_id.as_str().to_owned());
            audit.csv_id = Some(record.csv_id.as_str().to_owned());
            None
        }
        Handled::Finalize(request, receipt) => {
            audit.finalization_id = receipt
                .finalization_id
                .as_ref()
                .map(|id| id.as_str().to_owned());
            audit.location_id = Some(request.location_id.as_str().to_owned());
            audit.csv_id = Some(request.csv_id.as_str().to_owned());
            audit.attempts = receipt.attempts();
            if let Delivered::Ran(outcome) = &receipt.result {
                audit.upstream_status = outcome.call().last_status;
                measures = Measures::of(outcome);
            }
            audit.replayed = matches!(receipt.result, Delivered::Replayed(_));
            measures.queued = matches!(receipt.result, Delivered::Accepted);
            measures.unrecorded_results = receipt.unrecorded.into();
            receipt.error()
        }
    };
    audit.code = error.map(Error::code);
    if let Some(error) = error.filter(|_| audit.status >= 500) {
        tracing::error!(request_id = %audit.request_id, code = error.code(), cause = %chain(error), "request failed");
    }
    observer.record(&audit, measures);
}
