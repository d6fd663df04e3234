//! The payment side of the black-box tests: a sandbox terminal signed on to the running
//! switch, phones holding device cards provisioned through the token service API, and a
//! TCP proxy between the switch and the issuer host that can lose answers or play dead.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use cloudpass::app::TERMINAL_MASTER_KEY_FILE;
use cloudpass::sandbox;
use cloudpass_core::{Currency, Money, SystemClock};
use cloudpass_crypto::{DeviceKeyPair, OsRandom, Pin};
use cloudpass_iso8583::framing::Framing;
use cloudpass_iso8583::link::Link;
use cloudpass_iso8583::net;
use cloudpass_sim::phone::{Phone, envelope_from_json};
use cloudpass_sim::pos::{Outcome, Pos, Presentment, Purchase, TerminalConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::app::{Backend, TestApp};
use cloudpass::app::AppConfig;

pub fn cny(decimal: &str) -> Money {
    Money::parse_decimal(decimal, Currency::CNY).unwrap()
}

/// A signed-on sandbox terminal.
pub struct Shop {
    pub pos: Pos,
    link: Arc<Link>,
    _stop: watch::Sender<bool>,
}

impl Shop {
    pub async fn open(app: &TestApp, terminal_id: &str) -> Shop {
        Self::open_as(app, terminal_id, sandbox::MERCHANT_CATEGORY).await
    }

    /// A terminal of a merchant in category `mcc`.
    pub async fn open_as(app: &TestApp, terminal_id: &str, mcc: &str) -> Shop {
        Self::open_with(app, terminal_id, mcc, Duration::from_secs(5)).await
    }

    /// A terminal that waits `timeout` for each answer before reversing.
    pub async fn open_with(app: &TestApp, terminal_id: &str, mcc: &str, timeout: Duration) -> Shop {
        Self::open_at(app, app.running.switch_addr, terminal_id, mcc, timeout).await
    }

    /// A terminal linked to the switch at `switch`.
    pub async fn open_at(
        app: &TestApp,
        switch: SocketAddr,
        terminal_id: &str,
        mcc: &str,
        timeout: Duration,
    ) -> Shop {
        let acquirer = (sandbox::ACQUIRER_ID, sandbox::MERCHANT_ID);
        Self::open_for(app, switch, acquirer, terminal_id, mcc, timeout).await
    }

    /// A terminal of the sandbox's e-commerce acquirer, the one allowed to send
    /// card-not-present payments.
    pub async fn open_ecommerce(app: &TestApp, terminal_id: &str, timeout: Duration) -> Shop {
        let acquirer = (
            sandbox::ECOMMERCE_ACQUIRER_ID,
            sandbox::ECOMMERCE_MERCHANT_ID,
        );
        Self::open_for(
            app,
            app.running.switch_addr,
            acquirer,
            terminal_id,
            "5999",
            timeout,
        )
        .await
    }

    /// A terminal of `acquirer` (its id and its merchant's) linked to the switch at `switch`.
    pub async fn open_for(
        app: &TestApp,
        switch: SocketAddr,
        (acquirer_id, merchant_id): (&str, &str),
        terminal_id: &str,
        mcc: &str,
        timeout: Duration,
    ) -> Shop {
        let (stop, stopped) = watch::channel(false);
        let link = Link::start(switch, timeout, stopped);
        for _ in 0..200 {
            if link.is_up().await {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(link.is_up().await, "the switch's port accepts connections");
        let master = cloudpass_core::hex::decode(
            std::fs::read_to_string(app.data_dir.join(TERMINAL_MASTER_KEY_FILE))
                .unwrap()
                .trim(),
        )
        .unwrap();
        let pos = Pos::new(
            TerminalConfig {
                terminal_id: terminal_id.into(),
                merchant_id: merchant_id.into(),
                merchant_category: mcc.into(),
                merchant_name: sandbox::MERCHANT_NAME.into(),
                acquirer_id: acquirer_id.into(),
                no_pin_limit: cny("1000.00"),
                reversal_attempts: 3,
            },
            &master,
            link.clone(),
            Arc::new(SystemClock),
            Arc::new(OsRandom),
        )
        .unwrap();
        pos.sign_on().await.expect("the sandbox terminal signs on");
        Shop {
            pos,
            link,
            _stop: stop,
        }
    }

    /// The same terminal keeping its unacknowledged reversals in `store`.
    pub fn keeping(self, store: Arc<dyn cloudpass_sim::pos::PendingReversals>) -> Shop {
        Shop {
            pos: self.pos.with_pending_reversals(store),
            ..self
        }
    }

    /// Waits until the terminal's link to the switch is up again (after a restart of the
    /// switch on the same address).
    pub async fn wait_linked(&self) {
        for _ in 0..500 {
            if self.link.is_up().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the terminal's link did not come back within 5 s");
    }

    /// The phone taps; the terminal sends the purchase (with the PIN if one is given).
    pub async fn tap(
        &self,
        phone: &mut Phone,
        amount: &str,
        pin: Option<&str>,
        cdcvm: bool,
    ) -> Outcome {
        let amount = cny(amount);
        let tap = phone
            .tap(&self.pos.terminal_data(amount), cdcvm)
            .expect("the phone taps");
        let pin = pin.map(|p| Pin::parse(p).unwrap());
        self.pos
            .purchase(&Purchase {
                account: phone.token(),
                expiry: Some(phone.expiry()),
                amount,
                field55: &tap.field55,
                presentment: Presentment::Contactless {
                    track2: &tap.track2,
                },
                pin: pin.as_ref(),
            })
            .await
            .expect("the purchase is sent")
    }

    /// A card-not-present purchase: the card number typed, with its CVN2 or PIN if given.
    pub async fn card_not_present(
        &self,
        card: &str,
        expiry: Option<&str>,
        amount: &str,
        cvn2: Option<&str>,
        pin: Option<&str>,
    ) -> Outcome {
        let pan = cloudpass_core::Pan::parse(card).unwrap();
        let pin = pin.map(|p| Pin::parse(p).unwrap());
        // Without an expiry the terminal sends none (field 14 absent).
        let expiry = expiry.map(|e| e.parse().unwrap());
        self.pos
            .purchase(&Purchase {
                account: &pan,
                expiry,
                amount: cny(amount),
                field55: &[],
                presentment: Presentment::CardNotPresent {
                    cvn2,
                    terminal_type: cloudpass_sim::pos::EcommerceTerminal::Mobile,
                },
                pin: pin.as_ref(),
            })
            .await
            .expect("the purchase is sent")
    }

    /// An in-app purchase with the phone's cryptogram; the password only if given.
    pub async fn in_app(&self, phone: &mut Phone, amount: &str, password: Option<&str>) -> Outcome {
        let amount = cny(amount);
        let cryptogram = phone
            .in_app(&self.pos.terminal_data(amount), false)
            .expect("the phone makes an in-app cryptogram");
        let pin = password.map(|p| Pin::parse(p).unwrap());
        self.pos
            .purchase(&Purchase {
                account: phone.token(),
                expiry: Some(phone.expiry()),
                amount,
                field55: &cryptogram.field55,
                presentment: Presentment::InApp,
                pin: pin.as_ref(),
            })
            .await
            .expect("the purchase is sent")
    }
}

/// Registers a device and provisions a green card onto it; the phone holding the result.
pub async fn phone(app: &TestApp, wallet: &str, device_id: &str, kind: &str, card: &str) -> Phone {
    let keys: DeviceKeyPair = app.device(wallet, device_id, kind).await;
    let expiry = if card == super::app::ABC_CREDIT {
        "2911"
    } else {
        "2912"
    };
    let (status, body) = app.provision(wallet, device_id, card, expiry, None).await;
    assert_eq!(status, 201, "{body}");
    let token_id = body["token"]["token_id"].as_str().unwrap();
    Phone::provision(
        &keys,
        token_id,
        &envelope_from_json(&body["card_profile"]).unwrap(),
    )
    .expect("the phone opens its card profile")
}

/// A card of the sandbox bank without a published SMS code: the bank's back office reissues
/// Ping An debit 6216261000000000018 (PIN 123456) as this number. Its number and the phone
/// the bank holds for it.
pub async fn reissued_card(app: &TestApp) -> (&'static str, &'static str) {
    let (reissued, phone) = ("6216261000000000026", "13552535506");
    let response = app
        .http
        .post(format!("{}/sim/issuer/v1/cards/reissue", app.base))
        .bearer_auth(sandbox::ISSUER_API_KEY)
        .json(&serde_json::json!({"card_number": "6216261000000000018", "new_card_number": reissued, "new_expiry": "3112"}))
        .send()
        .await
        .unwrap();
    // The bank's books change; the token service, which holds no token of the card, answers
    // 404 to the bank's news of it.
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        status == 200 || body["code"] == "CARD_NOT_FOUND",
        "{status} {body}"
    );
    (reissued, phone)
}

/// The card's balance at the issuer (minor units), and the books' balance check.
pub async fn balance(app: &TestApp, card: &str) -> i64 {
    let (debits, credits) = app.bank().ledger_totals().await.unwrap();
    assert_eq!(debits, credits, "the issuer's ledger balances");
    app.bank().card_balance(card).await.unwrap().0
}

pub const PASS: u8 = 0;
/// Requests reach the issuer; its answers are lost.
pub const LOSE_ANSWERS: u8 = 1;
/// Nobody listens.
pub const DOWN: u8 = 2;

/// A TCP proxy in front of the issuer host's ISO 8583 port.
pub struct FaultProxy {
    pub addr: SocketAddr,
    pub target: Arc<OnceLock<SocketAddr>>,
    mode: Arc<AtomicU8>,
    listener: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
    connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl FaultProxy {
    pub async fn start() -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = FaultProxy {
            addr: listener.local_addr().unwrap(),
            target: Arc::new(OnceLock::new()),
            mode: Arc::new(AtomicU8::new(PASS)),
            listener: Arc::new(Mutex::new(None)),
            connections: Arc::new(Mutex::new(Vec::new())),
        };
        proxy.accept(listener);
        proxy
    }

    fn accept(&self, listener: TcpListener) {
        let target = Arc::clone(&self.target);
        let mode = Arc::clone(&self.mode);
        let connections = Arc::clone(&self.connections);
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                // A connection that comes before the target is known waits for it: dropping
                // it would leave the switch's link down for its reconnect backoff just when
                // the test starts paying.
                let target = loop {
                    if let Some(target) = target.get().copied() {
                        break target;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                };
                let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                    continue;
                };
                let mode = Arc::clone(&mode);
                connections
                    .lock()
                    .unwrap()
                    .push(tokio::spawn(pump(client, server, mode)));
            }
        });
        *self.listener.lock().unwrap() = Some(task);
    }

    pub fn lose_answers(&self) {
        self.mode.store(LOSE_ANSWERS, Ordering::SeqCst);
    }

    /// Closes every connection and stops listening: connecting is refused.
    pub fn go_down(&self) {
        self.mode.store(DOWN, Ordering::SeqCst);
        if let Some(task) = self.listener.lock().unwrap().take() {
            task.abort();
        }
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    /// Passes everything again (listening again if it was down).
    pub async fn pass(&self) {
        let was_down = self.mode.swap(PASS, Ordering::SeqCst) == DOWN;
        if was_down {
            let mut listener = None;
            for _ in 0..100 {
                match TcpListener::bind(self.addr).await {
                    Ok(bound) => {
                        listener = Some(bound);
                        break;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            self.accept(listener.expect("the proxy's port binds again"));
        }
    }
}

async fn pump(client: tokio::net::TcpStream, server: tokio::net::TcpStream, mode: Arc<AtomicU8>) {
    let framing = Framing::default();
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = async {
        while let Ok(Some(frame)) = net::read_frame(&mut client_read, &framing).await {
            if net::write_frame(&mut server_write, &framing, None, &frame.message)
                .await
                .is_err()
            {
                return;
            }
        }
    };
    let downstream = async {
        while let Ok(Some(frame)) = net::read_frame(&mut server_read, &framing).await {
            if mode.load(Ordering::SeqCst) == LOSE_ANSWERS {
                continue;
            }
            if net::write_frame(&mut client_write, &framing, None, &frame.message)
                .await
                .is_err()
            {
                return;
            }
        }
    };
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
    }
}

/// A running app whose switch reaches the issuer host through a [`FaultProxy`], with a
/// short issuer timeout; `adjust` changes the rest of the configuration.
pub async fn with_fault_proxy(
    backend: Backend,
    adjust: impl FnOnce(&mut AppConfig),
) -> (TestApp, FaultProxy) {
    let proxy = FaultProxy::start().await;
    let proxy_addr = proxy.addr;
    let app = TestApp::start_with(backend, |config| {
        config.issuer_link_override = Some(proxy_addr);
        config.switch.issuer_timeout = Duration::from_millis(400);
        adjust(config);
    })
    .await;
    proxy
        .target
        .set(app.running.sandbox.as_ref().unwrap().issuer_iso_addr)
        .unwrap();
    for _ in 0..200 {
        if app.running.switch.issuer_link_up().await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(app.running.switch.issuer_link_up().await);
    (app, proxy)
}
