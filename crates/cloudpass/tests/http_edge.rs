//! The HTTP port and the switch's port at their edges: errors the framework makes answered
//! as JSON, slow clients cut off while a wallet keeps provisioning, and TLS on both ports
//! (mutual TLS for acquirers) with certificates made here by rcgen.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use cloudpass_iso8583::framing::Framing;
use cloudpass_iso8583::{Message, Mti, net, profile};
use rustls_pki_types::ServerName;
use support::app::*;
use support::pki::Pki;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

async fn raw_request(app: &TestApp, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(app.running.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text[9..12].parse().unwrap();
    (status, text)
}

/// 404, 405, 413 and a malformed path value are JSON `{code, message}`, and quote nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn framework_errors_are_json() {
    let app = TestApp::start(Backend::Sqlite).await;
    let get = |path: &str| app.http.get(format!("{}{path}", app.base)).send();
    let response = get("/tsp/v1/nowhere/6216261000000000018").await.unwrap();
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "NOT_FOUND");
    assert!(!body.to_string().contains("6216261000000000018"));

    let response = app
        .http
        .delete(format!("{}/tsp/v1/tokens", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["code"],
        "METHOD_NOT_ALLOWED"
    );

    let response = app
        .http
        .post(format!("{}/tsp/v1/tokens", app.base))
        .bearer_auth(APPLE)
        .header("idempotency-key", "big")
        .body(vec![b' '; 1 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["code"],
        "PAYLOAD_TOO_LARGE"
    );
    app.stop().await;
}

/// 1,000 slow clients (headers sent in part, then nothing) from other addresses do not stop a
/// wallet from provisioning; the server closes them once the header time is up, and a body
/// that trickles in is answered 408.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_clients_are_cut_off_and_do_not_block_a_wallet() {
    let app = TestApp::start_with(Backend::Sqlite, |config| {
        config.http_limits.header_timeout = Duration::from_secs(2);
        config.http_limits.request_timeout = Duration::from_secs(2);
    })
    .await;
    let target = app.running.addr;
    let mut slow = Vec::new();
    for index in 0..1_000usize {
        let source = Ipv4Addr::new(127, 0, 20 + (index / 250) as u8, 1 + (index % 250) as u8);
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from((source, 0))).unwrap();
        let mut stream = socket.connect(target).await.unwrap();
        stream
            .write_all(b"POST /tsp/v1/tokens HTTP/1.1\r\nHost: cloudpass\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(stream);
    }
    let began = Instant::now();
    app.device(APPLE, "iphone", "handset_se").await;
    app.green(APPLE, "iphone", CMB_DEBIT).await;
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );

    // Past the header time every slow client has been closed.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let mut closed = 0;
    for stream in &mut slow {
        let mut byte = [0u8; 1];
        if let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_millis(50), stream.read(&mut byte)).await
        {
            closed += 1;
        }
    }
    assert_eq!(closed, slow.len(), "every slow client was closed");

    // A body promised and never sent: 408 as JSON.
    let mut stream = TcpStream::connect(target).await.unwrap();
    stream
        .write_all(b"POST /tsp/v1/users HTTP/1.1\r\nHost: cloudpass\r\nContent-Length: 100\r\nAuthorization: Bearer sk_sandbox_apple_pay\r\nIdempotency-Key: k1\r\n\r\n{")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("REQUEST_TIMEOUT"), "{text}");
    let (status, _) = raw_request(
        &app,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    app.stop().await;
}

/// TLS on the HTTP port (the sandbox's own parties trust it and keep working) and mutual TLS
/// on the switch's port: an acquirer with a certificate from the configured CA signs on; one
/// without cannot even send a frame; plain TCP is refused on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_on_both_ports_and_client_certificates_for_acquirers() {
    let pki =
        Pki::make(&std::env::temp_dir().join(format!("cloudpass-pki-{}", std::process::id())));
    let app = TestApp::start_with(Backend::Sqlite, |config| {
        config.http_tls = Some(pki.server(false));
        config.switch_tls = Some(pki.server(true));
    })
    .await;
    assert!(app.base.starts_with("https://"), "{}", app.base);

    // HTTPS with the test CA: the sandbox works end to end (its bank and its webhook sink
    // are called over TLS on this port).
    let app = app.with_http(pki.client());
    app.device(APPLE, "iphone", "handset_se").await;
    app.green(APPLE, "iphone", CMB_DEBIT).await;
    let plain = reqwest::Client::new()
        .get(format!("http://{}/healthz", app.running.addr))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());

    // The switch: mutual TLS.
    let mut sign_on = Message::new(Mti::NETWORK_REQUEST);
    sign_on
        .set_text(7, "1202101500")
        .set_text(11, "000001")
        .set_text(32, cloudpass::sandbox::PLAIN_ACQUIRER_ID)
        .set_text(41, cloudpass::sandbox::PLAIN_TERMINALS[1])
        .set_text(42, cloudpass::sandbox::PLAIN_MERCHANT_ID)
        .set_text(70, "001");
    let bytes = profile::cloudpass().encode(&sign_on).unwrap();
    let framing = Framing::default();
    let server_name = ServerName::try_from("127.0.0.1").unwrap();

    let tcp = TcpStream::connect(app.running.switch_addr).await.unwrap();
    let mut tls = pki
        .connector(true)
        .connect(server_name.clone(), tcp)
        .await
        .unwrap();
    net::write_frame(&mut tls, &framing, None, &bytes)
        .await
        .unwrap();
    let frame = tokio::time::timeout(Duration::from_secs(5), net::read_frame(&mut tls, &framing))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let answer = profile::cloudpass().decode(&frame.message).unwrap();
    assert_eq!(answer.get_str(39), Some("00"));
    assert_eq!(answer.get(62).map(<[u8]>::len), Some(40));

    // Without a client certificate the handshake (or the first read) fails.
    let tcp = TcpStream::connect(app.running.switch_addr).await.unwrap();
    let refused = match pki.connector(false).connect(server_name, tcp).await {
        Err(_) => true,
        Ok(mut tls) => {
            let _ = net::write_frame(&mut tls, &framing, None, &bytes).await;
            !matches!(
                tokio::time::timeout(Duration::from_secs(5), net::read_frame(&mut tls, &framing))
                    .await,
                Ok(Ok(Some(_)))
            )
        }
    };
    assert!(refused, "no client certificate, no service");
    // Plain TCP: no answer.
    let mut tcp = TcpStream::connect(app.running.switch_addr).await.unwrap();
    let _ = net::write_frame(&mut tcp, &framing, None, &bytes).await;
    assert!(!matches!(
        tokio::time::timeout(Duration::from_secs(5), net::read_frame(&mut tcp, &framing)).await,
        Ok(Ok(Some(_)))
    ));
    app.stop().await;
    let _ = std::fs::remove_dir_all(&pki.dir);
}

/// Roles, identifiers, amounts and guessed keys: a wallet on the bank's side is 403; control
/// characters in identifiers and absurd no-PIN limits are 400; an address that fails
/// authentication 20 times in a minute is answered 429 — even with a right key — while
/// others carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn roles_identifiers_amounts_and_guessed_keys() {
    let app = TestApp::start(Backend::Sqlite).await;
    let (status, body) = app
        .post(
            APPLE,
            "/tsp/v1/issuer/cards/tokens",
            serde_json::json!({"card_number": CMB_DEBIT}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("FORBIDDEN")),
        "{body}"
    );

    let (status, body) = app
        .post(
            APPLE,
            "/tsp/v1/devices",
            serde_json::json!({"device_id": "evil\nINFO forged log line", "kind": "hce", "brand": "x", "public_key": "11".repeat(32)}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("INVALID_REQUEST")),
        "{body}"
    );
    assert!(!body.to_string().contains("forged"), "{body}");

    let (status, body) = app
        .put(
            BANK,
            "/tsp/v1/issuer/products/debit/cvm-limits",
            serde_json::json!({"contactless_no_pin_limit": "92233720368547758.07", "online_no_pin_limit": "500.00"}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("INVALID_REQUEST")),
        "{body}"
    );

    let guesser = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 9]))
        .build()
        .unwrap();
    let guess = |key: &'static str| {
        guesser
            .get(format!("{}/tsp/v1/devices/iphone", app.base))
            .bearer_auth(key)
            .send()
    };
    for _ in 0..20 {
        assert_eq!(guess("sk_guess").await.unwrap().status(), 401);
    }
    let blocked = guess(APPLE).await.unwrap();
    assert_eq!(blocked.status(), 429);
    assert_eq!(
        blocked.json::<serde_json::Value>().await.unwrap()["code"],
        "TOO_MANY_REQUESTS"
    );
    // Another address is not held back.
    let (status, _) = app.get(APPLE, "/tsp/v1/devices/iphone").await;
    assert_eq!(status, 404, "an unknown device, but an answer");
    app.stop().await;
}
