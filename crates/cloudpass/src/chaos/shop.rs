//! A merchant taking app payments through the institution gateway during a run. The sandbox
//! merchant (signMethod 11, its secure key) issues a TN (`appTransReq.do`); the payer pays it
//! through the payment control (`POST /gateway/pay/{tn}`) with a chaos debit card; the
//! merchant then undoes some payments (txnType 31) and refunds part of others (04) at
//! `backTransReq.do`. Each request is signed once and sent again byte for byte while no
//! answer comes, as UPACP asks. The merchant's `backUrl` is a receiver in this process that
//! sometimes fails, is slow, or answers too late. After the load every order is queried and
//! the reconciliation file fetched, for the audit.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine;
use cloudpass::sandbox_upacp::{SANDBOX_MER_ID, SANDBOX_SECURE_KEY};
use cloudpass_core::{Random, SeededRandom};
use cloudpass_upacp::Form;
use cloudpass_upacp::signing::{self, SignMethod};
use tokio::sync::watch;

use super::load::CARDS;

/// The platform's waits between a failed notification and its next send (`serve
/// --notification-retry-seconds`): five sends within half a minute.
pub const NOTIFICATION_RETRY_SECONDS: &str = "2,4,8,16";
/// How long a request is sent again while no answer comes.
const RETRY_FOR: Duration = Duration::from_secs(60);
/// How long the audit waits for orders in flight to be settled by the gateway (its sweep
/// settles a payment whose answer was lost after 2 minutes).
const SETTLE_FOR: Duration = Duration::from_secs(240);
/// The receiver fails at most this many sends of one notification (the gateway sends each
/// five times at most: the receiver's faults stay within what the gateway promises to ride
/// out).
const MAX_FAILED_SENDS: u32 = 2;

/// What the merchant asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trade {
    Consume,
    Undo,
    Refund,
}

impl Trade {
    pub fn txn_type(self) -> &'static str {
        match self {
            Trade::Consume => "01",
            Trade::Undo => "31",
            Trade::Refund => "04",
        }
    }
}

/// One order of the merchant's, and what its final query said.
#[derive(Debug, Clone)]
pub struct ShopOrder {
    pub order_id: String,
    pub txn_time: String,
    pub trade: Trade,
    pub amount: i64,
    /// For a return: the consume's order.
    pub of: Option<String>,
    pub settled: Option<Settled>,
}

/// The final query of an order: `origRespCode`, and for a success its identifiers.
#[derive(Debug, Clone, Default)]
pub struct Settled {
    /// `origRespCode`, or the query's own `respCode` when it has none (34: never issued, or
    /// issued and never paid).
    pub code: String,
    pub query_id: String,
    pub trace_no: String,
    pub trace_time: String,
    pub settle_date: String,
}

impl ShopOrder {
    pub fn succeeded(&self) -> bool {
        self.settled.as_ref().is_some_and(|s| s.code == "00")
    }
}

/// One line of a reconciliation file: (queryId, txnType, orderId, txnAmt).
pub type FileLine = (String, String, String, i64);

/// What the merchant knows at the end.
#[derive(Debug, Default)]
pub struct ShopFacts {
    pub orders: Vec<ShopOrder>,
    /// (orderId, txnType) of every notification the receiver took with respCode 00.
    pub notified: BTreeSet<(String, String)>,
    /// The reconciliation files of the run's clearing days; a day whose file could not be
    /// had is named in `files_missing`.
    pub file_lines: Vec<FileLine>,
    pub files_missing: Vec<String>,
}

/// The merchant's notification endpoint.
pub struct Receiver {
    random: SeededRandom,
    failed_sends: Mutex<HashMap<(String, String), u32>>,
    notified: Mutex<BTreeSet<(String, String)>>,
    /// After the load: every notification is taken at once.
    healed: AtomicBool,
}

impl Receiver {
    /// Listens on a port of its own; the `backUrl` to give.
    pub async fn start(seed: u64) -> Result<(Arc<Receiver>, String), String> {
        let receiver = Arc::new(Receiver {
            random: SeededRandom::new(seed ^ 0x5A0B),
            failed_sends: Mutex::new(HashMap::new()),
            notified: Mutex::new(BTreeSet::new()),
            healed: AtomicBool::new(false),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("cannot start the merchant's receiver: {e}"))?;
        let address: SocketAddr = listener.local_addr().map_err(|e| e.to_string())?;
        let router = axum::Router::new()
            .route("/notify", axum::routing::post(take))
            .with_state(Arc::clone(&receiver));
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok((receiver, format!("http://{address}/notify")))
    }

    pub fn heal(&self) {
        self.healed.store(true, Ordering::SeqCst);
    }

    /// Whether this send fails (answered 500, or answered after the gateway's 10 s).
    fn fails(&self, key: &(String, String)) -> Option<Duration> {
        if self.healed.load(Ordering::SeqCst) {
            return None;
        }
        let mut failed = self.failed_sends.lock().unwrap_or_else(|p| p.into_inner());
        let count = failed.entry(key.clone()).or_insert(0);
        if *count >= MAX_FAILED_SENDS {
            return None;
        }
        let fault = match self.random.below(10) {
            0 => Some(Duration::ZERO),
            1 => Some(Duration::from_secs(11)),
            _ => None,
        };
        if fault.is_some() {
            *count += 1;
        }
        fault
    }
}

async fn take(State(receiver): State<Arc<Receiver>>, body: String) -> StatusCode {
    let Ok(form) = Form::parse_urlencoded(body.as_bytes()) else {
        return StatusCode::BAD_REQUEST;
    };
    let key = (
        form.get("orderId").unwrap_or_default().to_owned(),
        form.get("txnType").unwrap_or_default().to_owned(),
    );
    match receiver.fails(&key) {
        Some(late) if late.is_zero() => return StatusCode::INTERNAL_SERVER_ERROR,
        Some(late) => tokio::time::sleep(late).await,
        None => {
            // Sometimes slow, within the gateway's patience.
            let slow = receiver.random.below(4);
            if slow == 0 {
                tokio::time::sleep(Duration::from_millis(500 + receiver.random.below(2_500))).await;
            }
        }
    }
    if form.get("respCode") == Some("00") {
        receiver
            .notified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key);
    }
    StatusCode::OK
}

pub struct Shop {
    /// The platform's HTTP address.
    pub base: String,
    pub seed: u64,
    pub back_url: String,
    pub random: SeededRandom,
    pub orders: Arc<Mutex<Vec<ShopOrder>>>,
}

fn beijing_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
        .unwrap_or(0);
    cloudpass_upacp::time::format_beijing(now)
}

fn signed(mut form: Form) -> String {
    signing::sign_secure_key(
        &mut form,
        SignMethod::SecureKeySha256,
        SANDBOX_SECURE_KEY.as_bytes(),
    );
    form.to_urlencoded()
}

fn header(txn_type: &str, txn_sub_type: &str, biz_type: &str) -> Form {
    Form::new()
        .with("version", "5.1.0")
        .with("encoding", "UTF-8")
        .with("txnType", txn_type)
        .with("txnSubType", txn_sub_type)
        .with("bizType", biz_type)
        .with("accessType", "0")
        .with("merId", SANDBOX_MER_ID)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap_or_default()
}

impl Shop {
    pub async fn run(&self, mut stop: watch::Receiver<bool>) {
        let http = client();
        let mut made = 0_u64;
        while !*stop.borrow() {
            made += 1;
            self.one_order(&http, made, &stop).await;
            let pause = Duration::from_millis(100 + self.random.below(400));
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.changed() => {}
            }
        }
    }

    fn remember(&self, order: ShopOrder) {
        self.orders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(order);
    }

    /// A consume paid by a chaos card, then perhaps an undo or a refund of it.
    async fn one_order(&self, http: &reqwest::Client, made: u64, stop: &watch::Receiver<bool>) {
        let card = &CARDS[usize::try_from(self.random.below(2)).unwrap_or(0)];
        let amount = 100 + i64::try_from(self.random.below(4_900)).unwrap_or(0);
        let order_id = format!("CHAOS{}N{made:07}", self.seed);
        let txn_time = beijing_now();
        let consume = header("01", "01", "000201")
            .with("channelType", "08")
            .with("orderId", order_id.as_str())
            .with("txnTime", txn_time.as_str())
            .with("txnAmt", amount.to_string())
            .with("currencyCode", "156")
            .with("backUrl", self.back_url.as_str());
        // Remembered before it is sent: the audit queries every order, answered or not.
        self.remember(ShopOrder {
            order_id: order_id.clone(),
            txn_time: txn_time.clone(),
            trade: Trade::Consume,
            amount,
            of: None,
            settled: None,
        });
        let Some(issued) = self
            .send(http, "/gateway/api/appTransReq.do", signed(consume), stop)
            .await
        else {
            return;
        };
        let Some(tn) = issued
            .get("tn")
            .filter(|_| issued.get("respCode") == Some("00"))
        else {
            return;
        };
        self.pay(http, tn, card.number, card.pin, stop).await;
        let Some(query) = self.query(http, &order_id, &txn_time, stop).await else {
            return;
        };
        if query.code != "00" {
            return;
        }
        let (trade, returned) = match self.random.below(6) {
            0 | 1 => (Trade::Undo, amount),
            2 | 3 => (
                Trade::Refund,
                1 + i64::try_from(self.random.below(u64::try_from(amount).unwrap_or(1)))
                    .unwrap_or(0),
            ),
            _ => return,
        };
        let return_id = format!("CHAOS{}R{made:07}", self.seed);
        let return_time = beijing_now();
        let back = header(trade.txn_type(), "00", "000201")
            .with("channelType", "07")
            .with("orderId", return_id.as_str())
            .with("txnTime", return_time.as_str())
            .with("txnAmt", returned.to_string())
            .with("currencyCode", "156")
            .with("backUrl", self.back_url.as_str())
            .with("origQryId", query.query_id.as_str());
        self.remember(ShopOrder {
            order_id: return_id,
            txn_time: return_time,
            trade,
            amount: returned,
            of: Some(order_id),
            settled: None,
        });
        let _ = self
            .send(http, "/gateway/api/backTransReq.do", signed(back), stop)
            .await;
    }

    /// Pays `tn` through the payment control, again while no answer comes.
    async fn pay(
        &self,
        http: &reqwest::Client,
        tn: &str,
        card_number: &str,
        pin: &str,
        stop: &watch::Receiver<bool>,
    ) {
        let body =
            serde_json::json!({"card_number": card_number, "sms_code": "111111", "pin": pin});
        let deadline = Instant::now() + RETRY_FOR;
        loop {
            let answer = http
                .post(format!("{}/gateway/pay/{tn}", self.base))
                .json(&body)
                .send()
                .await;
            // 503: the gateway's terminal is signing on; 5xx: the platform is starting.
            if answer.is_ok_and(|answer| !answer.status().is_server_error()) {
                return;
            }
            if Instant::now() >= deadline || *stop.borrow() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Posts `body` to `path` until an answer comes (or the time is up, or the load stops).
    async fn send(
        &self,
        http: &reqwest::Client,
        path: &str,
        body: String,
        stop: &watch::Receiver<bool>,
    ) -> Option<Form> {
        let deadline = Instant::now() + RETRY_FOR;
        loop {
            if let Some(answer) = post_form(http, &format!("{}{path}", self.base), &body).await {
                return Some(answer);
            }
            if Instant::now() >= deadline || *stop.borrow() {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn query(
        &self,
        http: &reqwest::Client,
        order_id: &str,
        txn_time: &str,
        stop: &watch::Receiver<bool>,
    ) -> Option<Settled> {
        let form = header("00", "00", "000000")
            .with("orderId", order_id)
            .with("txnTime", txn_time);
        let answer = self
            .send(http, "/gateway/api/queryTrans.do", signed(form), stop)
            .await?;
        Some(settled_from(&answer))
    }

    /// After the load: every order's final query, waiting while any is in flight (the
    /// gateway's sweep settles a payment whose answer was lost).
    pub async fn settle(&self) -> Vec<ShopOrder> {
        let http = client();
        let (_never, stop) = watch::channel(false);
        let mut orders = self
            .orders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let deadline = Instant::now() + SETTLE_FOR;
        loop {
            let mut in_flight = 0;
            for order in orders.iter_mut() {
                if order.settled.as_ref().is_some_and(|s| s.code != "05") {
                    continue;
                }
                order.settled = self
                    .query(&http, &order.order_id, &order.txn_time, &stop)
                    .await;
                if order.settled.as_ref().is_none_or(|s| s.code == "05") {
                    in_flight += 1;
                }
            }
            if in_flight == 0 || Instant::now() >= deadline {
                return orders;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// What the merchant knows once the orders are settled and the notifications delivered:
    /// the notifications it took and its reconciliation files.
    pub async fn facts(&self, orders: Vec<ShopOrder>, receiver: &Receiver) -> ShopFacts {
        let http = client();
        let (_never, stop) = watch::channel(false);
        let days: BTreeSet<String> = orders
            .iter()
            .filter(|order| order.succeeded())
            .filter_map(|order| order.settled.as_ref().map(|s| s.settle_date.clone()))
            .collect();
        let (mut file_lines, mut files_missing) = (Vec::new(), Vec::new());
        for day in days {
            match self.file(&http, &day, &stop).await {
                Some(lines) => file_lines.extend(lines),
                None => files_missing.push(day),
            }
        }
        let notified = receiver
            .notified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        ShopFacts {
            orders,
            notified,
            file_lines,
            files_missing,
        }
    }

    /// The reconciliation file of clearing day `day` (MMDD), as lines.
    async fn file(
        &self,
        http: &reqwest::Client,
        day: &str,
        stop: &watch::Receiver<bool>,
    ) -> Option<Vec<FileLine>> {
        let form = header("76", "01", "000000")
            .with("txnTime", beijing_now())
            .with("settleDate", day)
            .with("fileType", "00");
        let answer = self
            .send(http, "/gateway/file/", signed(form), stop)
            .await?;
        let packed = base64::engine::general_purpose::STANDARD
            .decode(answer.get("fileContent")?)
            .ok()?;
        let mut text = String::new();
        flate2::read::ZlibDecoder::new(packed.as_slice())
            .read_to_string(&mut text)
            .ok()?;
        Some(
            text.lines()
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split('|').collect();
                    Some((
                        (*fields.first()?).to_owned(),
                        (*fields.get(1)?).to_owned(),
                        (*fields.get(2)?).to_owned(),
                        fields.get(4)?.parse().ok()?,
                    ))
                })
                .collect(),
        )
    }
}

/// The answer, when one came: a form the gateway answered (any HTTP status).
async fn post_form(http: &reqwest::Client, url: &str, body: &str) -> Option<Form> {
    let response = http
        .post(url)
        .header(
            "content-type",
            "application/x-www-form-urlencoded;charset=UTF-8",
        )
        .body(body.to_owned())
        .send()
        .await
        .ok()?;
    if response.status().is_server_error() {
        return None;
    }
    let text = response.text().await.ok()?;
    let form = Form::parse_raw(&text).ok()?;
    form.get("respCode").is_some().then_some(form)
}

fn settled_from(answer: &Form) -> Settled {
    let field = |name: &str| answer.get(name).unwrap_or_default().to_owned();
    let code = match answer.get("respCode") {
        Some("00") => field("origRespCode"),
        other => other.unwrap_or_default().to_owned(),
    };
    Settled {
        code,
        query_id: field("queryId"),
        trace_no: field("traceNo"),
        trace_time: field("traceTime"),
        settle_date: field("settleDate"),
    }
}
