//! The device pages (`/wallet/devices…`): the account's devices and their cards, adding a
//! device, putting a bound card onto one (with the bank's code when it asks for one), a
//! card's default/suspend/resume/delete, and a device reported lost or found or signed out.
//! Every change is a posted form with the CSRF token; every answer a page that says what
//! happened and what to do next.

use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use cloudpass_tsp::model::TokenView;

use crate::cards::BoundCard;
use crate::devices::{Added, CardAction, DeviceChoice, DeviceError, DeviceReport, Maker};
use crate::http::{PageQuery, Visit, posted_by_person, signed_in};
use crate::texts::{self, Texts};
use crate::{SignedIn, Wallet};

#[derive(Template)]
#[template(path = "devices.html")]
struct DevicesPage<'a> {
    t: &'a Texts,
    csrf: &'a str,
    devices: Vec<DeviceBlock>,
    cards: Vec<BoundCard>,
    choices: Vec<(&'static str, &'static str)>,
    notice: Option<&'a str>,
    error: Option<String>,
}

struct DeviceBlock {
    id: String,
    name: String,
    lost: bool,
    cards: Vec<CardLine>,
}

struct CardLine {
    token_id: String,
    card_last4: String,
    token_last4: String,
    status: String,
    status_text: &'static str,
    /// Why a suspended card is suspended (who holds it), in words.
    why: String,
    is_default: bool,
    /// (form value, button text) of what may be done to it now.
    actions: Vec<(&'static str, &'static str)>,
}

#[derive(Template)]
#[template(path = "device_code.html")]
struct CodePage<'a> {
    t: &'a Texts,
    csrf: &'a str,
    device_id: &'a str,
    token_id: &'a str,
    card_last4: &'a str,
    destination: Option<String>,
    error: Option<String>,
}

fn card_line(t: &Texts, token: &TokenView) -> CardLine {
    let status_text = match token.status.as_str() {
        "active" => t.status_active,
        "suspended" => t.status_suspended,
        "pending" => t.status_pending,
        _ => t.status_deleted,
    };
    let mut actions = Vec::new();
    match token.status.as_str() {
        "active" => {
            if !token.is_default {
                actions.push(("default", t.make_default));
            }
            actions.push(("suspend", t.suspend));
        }
        // The app lifts only its own hold; the bank's, a lost card's or a lost device's
        // are lifted where they were put.
        "suspended" if token.holds.contains(&"wallet") => actions.push(("resume", t.resume)),
        _ => {}
    }
    actions.push(("delete", t.delete));
    CardLine {
        token_id: token.token_id.clone(),
        card_last4: token.card_last4.clone(),
        token_last4: token.token_last4.clone(),
        status: token.status.clone(),
        status_text,
        why: token
            .holds
            .iter()
            .map(|hold| match *hold {
                "wallet" => t.hold_wallet,
                "issuer" => t.hold_issuer,
                "card_lost" => t.hold_card_lost,
                "card_stolen" => t.hold_card_stolen,
                _ => t.hold_device_lost,
            })
            .collect::<Vec<_>>()
            .join(" · "),
        is_default: token.is_default,
        actions,
    }
}

fn choices(t: &Texts) -> Vec<(&'static str, &'static str)> {
    let mut choices: Vec<_> = Maker::ALL
        .into_iter()
        .map(|maker| (maker.code(), maker.name()))
        .collect();
    choices.push(("watch", t.choice_watch));
    choices.push(("app", t.choice_app));
    choices
}

/// The devices page with a notice or an error.
async fn devices_page(
    wallet: &Wallet,
    visit: Visit,
    person: &SignedIn,
    status: StatusCode,
    notice: Option<&'static str>,
    error: Option<&DeviceError>,
) -> Response {
    let t = visit.texts();
    let (listed, cards) = match (
        wallet.devices.list(person).await,
        wallet.cards.list(person).await,
    ) {
        (Ok(listed), Ok(cards)) => (listed, cards),
        (Err(error), _) => {
            let message = texts::device_error(visit.language, &error);
            return render(
                visit,
                StatusCode::SERVICE_UNAVAILABLE,
                Vec::new(),
                Vec::new(),
                None,
                Some(message),
            );
        }
        (_, Err(error)) => {
            let message = texts::card_error(visit.language, &error);
            return render(
                visit,
                StatusCode::SERVICE_UNAVAILABLE,
                Vec::new(),
                Vec::new(),
                None,
                Some(message),
            );
        }
    };
    let devices = listed
        .iter()
        .map(|listed| DeviceBlock {
            id: listed.device.id.clone(),
            name: listed.device.name.clone(),
            lost: listed.state == "lost",
            cards: listed
                .cards
                .iter()
                .map(|token| card_line(t, token))
                .collect(),
        })
        .collect();
    let error = error.map(|error| texts::device_error(visit.language, error));
    render(visit, status, devices, cards, notice, error)
}

fn render(
    visit: Visit,
    status: StatusCode,
    devices: Vec<DeviceBlock>,
    cards: Vec<BoundCard>,
    notice: Option<&str>,
    error: Option<String>,
) -> Response {
    let t = visit.texts();
    let csrf = visit.csrf.clone();
    let page = DevicesPage {
        t,
        csrf: &csrf,
        devices,
        cards,
        choices: choices(t),
        notice,
        error,
    };
    visit.page(status, &page)
}

/// The devices page again, saying why the step was refused.
async fn refused(
    wallet: &Wallet,
    visit: Visit,
    person: &SignedIn,
    error: &DeviceError,
) -> Response {
    devices_page(wallet, visit, person, status_of(error), None, Some(error)).await
}

/// The step that asks for the code the bank texted.
fn code_page(
    visit: Visit,
    status: StatusCode,
    ids: (&str, &str),
    card_last4: &str,
    destination: Option<String>,
    error: Option<String>,
) -> Response {
    let t = visit.texts();
    let csrf = visit.csrf.clone();
    let page = CodePage {
        t,
        csrf: &csrf,
        device_id: ids.0,
        token_id: ids.1,
        card_last4,
        destination,
        error,
    };
    visit.page(status, &page)
}

fn status_of(error: &DeviceError) -> StatusCode {
    match error {
        DeviceError::Unavailable | DeviceError::Unreachable => StatusCode::SERVICE_UNAVAILABLE,
        DeviceError::NoDevice | DeviceError::NoDeviceCard => StatusCode::NOT_FOUND,
        DeviceError::AlreadyOnDevice | DeviceError::NotNow(_) | DeviceError::NotActive => {
            StatusCode::CONFLICT
        }
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

pub(crate) async fn show(
    State(wallet): State<Arc<Wallet>>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let visit = Visit::read(&wallet, &headers, query.lang.as_deref());
    let Some((_, person)) = signed_in(&wallet, &headers).await else {
        return visit.redirect("/wallet/login", None);
    };
    let t = visit.texts();
    let notice = match query.done.as_deref() {
        Some("device") => Some(t.device_added),
        Some("card") => Some(t.card_added),
        Some("changed") => Some(t.card_changed),
        Some("reported") => Some(t.device_reported),
        Some("signed_out") => Some(t.signed_out_device),
        _ => None,
    };
    devices_page(&wallet, visit, &person, StatusCode::OK, notice, None).await
}

pub(crate) async fn add_device(
    State(wallet): State<Arc<Wallet>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let (visit, form, person) = posted_by_person(&wallet, &headers, &body).await?;
    let outcome = match DeviceChoice::parse(form.text("choice")) {
        Some(choice) => wallet.devices.add(&person, choice).await.map(|_| ()),
        None => Err(DeviceError::BadChoice),
    };
    Ok(match outcome {
        Ok(()) => visit.redirect("/wallet/devices?done=device", None),
        Err(error) => refused(&wallet, visit, &person, &error).await,
    })
}

pub(crate) async fn add_card(
    State(wallet): State<Arc<Wallet>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let (visit, form, person) = posted_by_person(&wallet, &headers, &body).await?;
    let device_id = form.text("device");
    let added = wallet
        .devices
        .add_card(&wallet.cards, &person, device_id, form.text("card"))
        .await;
    Ok(match added {
        Ok(Added::Active(_)) => visit.redirect("/wallet/devices?done=card", None),
        Ok(Added::NeedsCode { token, destination }) => code_page(
            visit,
            StatusCode::OK,
            (device_id, &token.token_id),
            &token.card_last4,
            Some(destination),
            None,
        ),
        Err(error) => refused(&wallet, visit, &person, &error).await,
    })
}

pub(crate) async fn confirm_code(
    State(wallet): State<Arc<Wallet>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let (visit, form, person) = posted_by_person(&wallet, &headers, &body).await?;
    let (device_id, token_id) = (form.text("device"), form.text("token"));
    let confirmed = wallet
        .devices
        .confirm_code(&person, device_id, token_id, form.text("code"))
        .await;
    Ok(match confirmed {
        Ok(_) => visit.redirect("/wallet/devices?done=card", None),
        Err(error @ DeviceError::WrongCode(_)) => {
            let message = texts::device_error(visit.language, &error);
            let card_last4 = wallet
                .devices
                .pending_card_last4(&person, device_id, token_id)
                .await
                .unwrap_or_default();
            code_page(
                visit,
                StatusCode::UNPROCESSABLE_ENTITY,
                (device_id, token_id),
                &card_last4,
                None,
                Some(message),
            )
        }
        Err(error) => refused(&wallet, visit, &person, &error).await,
    })
}

pub(crate) async fn card_action(
    State(wallet): State<Arc<Wallet>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let (visit, form, person) = posted_by_person(&wallet, &headers, &body).await?;
    let outcome = match CardAction::parse(form.text("action")) {
        Some(action) => wallet
            .devices
            .card_action(&person, form.text("device"), form.text("token"), action)
            .await
            .map(|_| ()),
        None => Err(DeviceError::NotNow("unknown action".into())),
    };
    Ok(match outcome {
        Ok(()) => visit.redirect("/wallet/devices?done=changed", None),
        Err(error) => refused(&wallet, visit, &person, &error).await,
    })
}

pub(crate) async fn report(
    State(wallet): State<Arc<Wallet>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let (visit, form, person) = posted_by_person(&wallet, &headers, &body).await?;
    let report = DeviceReport::parse(form.text("report"));
    let outcome = match report {
        Some(report) => {
            wallet
                .devices
                .report(&person, form.text("device"), report)
                .await
        }
        None => Err(DeviceError::NotNow("unknown report".into())),
    };
    Ok(match outcome {
        Ok(()) if report == Some(DeviceReport::SignOut) => {
            visit.redirect("/wallet/devices?done=signed_out", None)
        }
        Ok(()) => visit.redirect("/wallet/devices?done=reported", None),
        Err(error) => refused(&wallet, visit, &person, &error).await,
    })
}
