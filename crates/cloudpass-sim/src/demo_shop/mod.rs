//! The demo institution (`/demo-merchant`): a small shop that takes payments through the
//! cloudpass gateway exactly as an outside institution would — UPACP over HTTP, signed with
//! its own merchant certificates, every answer and notification verified through the
//! platform's CA (`client`). No internal shortcut: it holds no handle on the gateway.
//!
//! Its checkout ranks the ways to pay as Cloud QuickPass's merchants do: the shop's own
//! balance first, Cloud QuickPass second (`appTransReq.do` for a TN, then the payment SDK,
//! which picks control pay, the cashier or WAP pay by itself), the cards bound at the shop
//! third (token payment, `bound_cards`: the shop keeps a token, never the card number), and
//! any other bank card last (API WAP: `frontTransReq.do`, channelType 08, on the gateway's
//! page). Each order's page shows its
//! state from `queryTrans.do`, the notification the shop received, the SDK's synchronous
//! result once the shop's server verified its signature, and a refund (`backTransReq.do`).
//!
//! The shop has two merchant numbers: one with the SDK-WAP permission and one without, so
//! the refusal a merchant without it gets can be seen. Its order book and the visitors'
//! balances live in memory: it is a stand-in, and a restart opens a new shop.

mod bound_cards;
pub mod client;
mod pages;
mod words;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use cloudpass_core::{Clock, Random};

pub use client::{PlatformTrust, ShopMerchant, UpacpClient};
pub use pages::router;

/// Orders and visitors the shop remembers; past it, the oldest go (it is a stand-in that
/// anyone can fill).
pub const BOOK_MAX: usize = 10_000;
/// A visitor's shop balance when they first come: 20.00 CNY.
pub const STARTING_BALANCE_FEN: u64 = 2_000;
/// The shop's token requestor id (`trId`) for token payment.
pub const TOKEN_REQUESTOR_ID: &str = "62000000048";
/// Cards a visitor may bind at the shop.
pub const BOUND_CARDS_MAX: usize = 5;

/// What the shop sells.
#[derive(Debug)]
pub struct Item {
    pub id: &'static str,
    pub name_zh: &'static str,
    pub name_en: &'static str,
    pub price_fen: u64,
}

pub const CATALOG: [Item; 3] = [
    Item {
        id: "latte",
        name_zh: "拿铁咖啡",
        name_en: "Latte",
        price_fen: 1_250,
    },
    Item {
        id: "notebook",
        name_zh: "笔记本",
        name_en: "Notebook",
        price_fen: 5_800,
    },
    Item {
        id: "headphones",
        name_zh: "耳机",
        name_en: "Headphones",
        price_fen: 29_900,
    },
];

/// Which of the shop's merchant numbers an order is taken under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storefront {
    /// With the SDK-WAP permission.
    Main,
    /// Without it.
    NoSdkWap,
}

/// How an order is being paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Balance,
    QuickPass,
    /// A card bound at the shop (token payment).
    BoundCard,
    Card,
}

impl Method {
    pub fn code(self) -> &'static str {
        match self {
            Method::Balance => "balance",
            Method::QuickPass => "quickpass",
            Method::BoundCard => "bound",
            Method::Card => "card",
        }
    }
}

/// One order in the shop's book.
#[derive(Debug, Clone)]
pub struct ShopOrder {
    /// The shop's order number, also its UPACP `orderId`.
    pub id: String,
    pub visitor: String,
    pub item: &'static Item,
    pub storefront: Storefront,
    /// `txnTime` of the UPACP order.
    pub txn_time: String,
    pub method: Option<Method>,
    pub tn: Option<String>,
    pub paid_from_balance: bool,
    /// What the verified notification said (`respCode`), once one came.
    pub notified: Option<String>,
    /// The discount the verified notification's `couponInfo` told of, fen.
    pub notified_discount: Option<u64>,
    /// The SDK's synchronous result, once verified.
    pub app_result: Option<String>,
    pub refunded_fen: u64,
    /// Tries with a bound card the gateway refused before any money moved (a wrong SMS
    /// code): each next try is a new UPACP order, `{id}R{attempt}` at a new `txnTime`.
    pub attempt: u32,
}

impl ShopOrder {
    /// The UPACP `orderId` of the order's current try.
    pub fn upacp_order_id(&self) -> String {
        if self.attempt == 0 {
            self.id.clone()
        } else {
            format!("{}R{}", self.id, self.attempt)
        }
    }
}

/// The shop's order number of a UPACP `orderId` (a retry's `{id}R{n}` included).
pub fn shop_order_id(upacp_order_id: &str) -> &str {
    upacp_order_id
        .split_once('R')
        .map_or(upacp_order_id, |(id, _)| id)
}

/// A card bound at the shop: its token and what may be shown of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundCard {
    pub token: String,
    /// First 6 and last 4 digits, as the gateway gave them.
    pub masked: String,
    /// `payCardType` 02.
    pub credit: bool,
}

/// A binding waiting for its SMS code: the card number lives here, in memory, only until
/// the opening is sent (then it is wiped), never in a page.
struct PendingBind {
    number: zeroize::Zeroizing<String>,
    expiry: Option<String>,
    order_id: String,
    txn_time: String,
    /// The order whose checkout the visitor came from.
    return_to: Option<String>,
}

#[derive(Default)]
struct Book {
    orders: BTreeMap<String, ShopOrder>,
    balances: HashMap<String, u64>,
    cards: HashMap<String, Vec<BoundCard>>,
    binds: HashMap<String, PendingBind>,
}

pub struct DemoShop {
    client: UpacpClient,
    main: ShopMerchant,
    no_sdk_wap: ShopMerchant,
    /// The shop's address as browsers and the gateway reach it (`http://host:port`): its
    /// `backUrl`, `frontUrl` and SDK return pages are under it.
    public_base: String,
    book: Mutex<Book>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
}

pub struct DemoShopParts {
    pub client: UpacpClient,
    pub main: ShopMerchant,
    pub no_sdk_wap: ShopMerchant,
    pub public_base: String,
    pub clock: Arc<dyn Clock>,
    pub random: Arc<dyn Random>,
}

impl DemoShop {
    pub fn new(parts: DemoShopParts) -> DemoShop {
        DemoShop {
            client: parts.client,
            main: parts.main,
            no_sdk_wap: parts.no_sdk_wap,
            public_base: parts.public_base,
            book: Mutex::new(Book::default()),
            clock: parts.clock,
            random: parts.random,
        }
    }

    fn merchant(&self, storefront: Storefront) -> &ShopMerchant {
        match storefront {
            Storefront::Main => &self.main,
            Storefront::NoSdkWap => &self.no_sdk_wap,
        }
    }

    fn now_seconds(&self) -> i64 {
        self.clock.now_millis().div_euclid(1_000)
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A new order of `item` for `visitor`.
    pub fn new_order(&self, visitor: &str, item: &'static Item, storefront: Storefront) -> String {
        let txn_time = cloudpass_upacp::time::format_beijing(self.now_seconds());
        let id = format!("DS{txn_time}{:06}", self.random.below(1_000_000));
        let order = ShopOrder {
            id: id.clone(),
            visitor: visitor.to_owned(),
            item,
            storefront,
            txn_time,
            method: None,
            tn: None,
            paid_from_balance: false,
            notified: None,
            notified_discount: None,
            app_result: None,
            refunded_fen: 0,
            attempt: 0,
        };
        let mut book = self.book();
        // Order numbers start with their time: the first is the oldest.
        while book.orders.len() >= BOOK_MAX {
            book.orders.pop_first();
        }
        book.orders.insert(id.clone(), order);
        id
    }

    pub fn order(&self, id: &str) -> Option<ShopOrder> {
        self.book().orders.get(id).cloned()
    }

    /// The visitor's orders, newest first.
    pub fn orders_of(&self, visitor: &str) -> Vec<ShopOrder> {
        let book = self.book();
        let mut orders: Vec<ShopOrder> = book
            .orders
            .values()
            .filter(|o| o.visitor == visitor)
            .cloned()
            .collect();
        orders.reverse();
        orders
    }

    pub fn balance(&self, visitor: &str) -> u64 {
        self.book()
            .balances
            .get(visitor)
            .copied()
            .unwrap_or(STARTING_BALANCE_FEN)
    }

    fn update(&self, id: &str, change: impl FnOnce(&mut ShopOrder)) {
        if let Some(order) = self.book().orders.get_mut(id) {
            change(order);
        }
    }

    /// Pays `id` from its visitor's balance; false when the balance is too low or the order
    /// already has a way of paying.
    pub fn pay_from_balance(&self, id: &str) -> bool {
        let mut book = self.book();
        let Some(order) = book.orders.get(id).cloned() else {
            return false;
        };
        let balance = book
            .balances
            .get(&order.visitor)
            .copied()
            .unwrap_or(STARTING_BALANCE_FEN);
        if order.method.is_some() || balance < order.item.price_fen {
            return false;
        }
        // A full book takes no new visitor's balance payment (their other ways still work).
        if book.balances.len() >= BOOK_MAX && !book.balances.contains_key(&order.visitor) {
            return false;
        }
        book.balances
            .insert(order.visitor.clone(), balance - order.item.price_fen);
        if let Some(order) = book.orders.get_mut(id) {
            order.method = Some(Method::Balance);
            order.paid_from_balance = true;
        }
        true
    }

    /// Claims `id` for `method`; false when another way of paying was chosen before.
    fn choose(&self, id: &str, method: Method) -> bool {
        let mut book = self.book();
        match book.orders.get_mut(id) {
            Some(order) if order.method.is_none() || order.method == Some(method) => {
                order.method = Some(method);
                true
            }
            _ => false,
        }
    }

    /// The visitor's bound cards.
    pub fn cards_of(&self, visitor: &str) -> Vec<BoundCard> {
        self.book().cards.get(visitor).cloned().unwrap_or_default()
    }

    /// The visitor's bound card with `token`.
    pub fn card_of(&self, visitor: &str, token: &str) -> Option<BoundCard> {
        self.cards_of(visitor)
            .into_iter()
            .find(|c| c.token == token)
    }

    /// Whether the visitor may bind another card.
    fn may_bind(&self, visitor: &str) -> bool {
        let book = self.book();
        match book.cards.get(visitor) {
            Some(cards) => cards.len() < BOUND_CARDS_MAX,
            None => book.cards.len() < BOOK_MAX,
        }
    }

    fn add_card(&self, visitor: &str, card: BoundCard) {
        let mut book = self.book();
        let cards = book.cards.entry(visitor.to_owned()).or_default();
        if !cards.iter().any(|c| c.token == card.token) {
            cards.push(card);
        }
    }

    fn remove_card(&self, visitor: &str, token: &str) {
        if let Some(cards) = self.book().cards.get_mut(visitor) {
            cards.retain(|c| c.token != token);
        }
    }

    /// Keeps a binding until its SMS code comes (one per visitor: a new one replaces it).
    fn start_bind(&self, visitor: &str, bind: PendingBind) {
        let mut book = self.book();
        if book.binds.len() >= BOOK_MAX && !book.binds.contains_key(visitor) {
            book.binds.clear();
        }
        book.binds.insert(visitor.to_owned(), bind);
    }

    fn take_bind(&self, visitor: &str) -> Option<PendingBind> {
        self.book().binds.remove(visitor)
    }

    /// The next try of `id` with a bound card: a new UPACP order at a new time.
    fn next_attempt(&self, id: &str) {
        let txn_time = cloudpass_upacp::time::format_beijing(self.now_seconds());
        self.update(id, |o| {
            o.attempt += 1;
            o.txn_time = txn_time;
        });
    }

    /// The shop's page of order `id`, as the SDK and the gateway send the payer back to it.
    pub fn order_address(&self, id: &str) -> String {
        format!("{}/demo-merchant/orders/{id}", self.public_base)
    }

    fn notify_address(&self) -> String {
        format!("{}/demo-merchant/notify", self.public_base)
    }
}
