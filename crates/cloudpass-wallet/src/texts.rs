//! The wallet's words in its two languages. Chinese is the default; a `?lang=en` or
//! `?lang=zh` on any page switches and is remembered in a cookie. Error messages come from
//! the account errors (English) with a Chinese line beside them in Chinese pages.

use crate::account::AccountError;
use crate::cards::CardError;
use crate::devices::DeviceError;
use crate::password::PasswordError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Chinese,
    English,
}

impl Language {
    pub fn parse(code: &str) -> Option<Language> {
        match code {
            "zh" => Some(Language::Chinese),
            "en" => Some(Language::English),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Language::Chinese => "zh",
            Language::English => "en",
        }
    }

    pub fn texts(self) -> &'static Texts {
        match self {
            Language::Chinese => &CHINESE,
            Language::English => &ENGLISH,
        }
    }
}

/// Every fixed string of the wallet's pages.
pub struct Texts {
    pub html_lang: &'static str,
    pub app_name: &'static str,
    pub sandbox: &'static str,
    pub other_language: &'static str,
    pub other_language_code: &'static str,
    pub sign_up_title: &'static str,
    pub log_in_title: &'static str,
    pub phone: &'static str,
    pub password: &'static str,
    pub password_rule: &'static str,
    pub password_again: &'static str,
    pub sign_up: &'static str,
    pub log_in: &'static str,
    pub have_account: &'static str,
    pub no_account: &'static str,
    pub home_title: &'static str,
    pub signed_in_as: &'static str,
    pub cards_title: &'static str,
    pub cards_empty: &'static str,
    pub log_out: &'static str,
    pub form_expired_title: &'static str,
    pub form_expired: &'static str,
    pub back_to_log_in: &'static str,
    pub footer: &'static str,
    pub bind_card: &'static str,
    pub card_number: &'static str,
    pub expiry: &'static str,
    pub cvn2: &'static str,
    pub next: &'static str,
    pub sms_code: &'static str,
    pub code_sent_to: &'static str,
    pub confirm_binding: &'static str,
    pub start_again: &'static str,
    pub back_home: &'static str,
    pub debit: &'static str,
    pub credit: &'static str,
    pub card_bound: &'static str,
    pub remove_card: &'static str,
    pub card_removed: &'static str,
    pub devices_title: &'static str,
    pub devices_empty: &'static str,
    pub add_device: &'static str,
    pub device_kind: &'static str,
    pub choice_app: &'static str,
    pub choice_watch: &'static str,
    pub device_added: &'static str,
    pub device_lost: &'static str,
    pub device_no_cards: &'static str,
    pub add_to_device: &'static str,
    pub bind_first: &'static str,
    pub token_number: &'static str,
    pub default_card: &'static str,
    pub make_default: &'static str,
    pub suspend: &'static str,
    pub resume: &'static str,
    pub delete: &'static str,
    pub report_lost: &'static str,
    pub report_found: &'static str,
    pub sign_out_device: &'static str,
    pub card_added: &'static str,
    pub card_changed: &'static str,
    pub device_reported: &'static str,
    pub signed_out_device: &'static str,
    pub device_code_title: &'static str,
    pub device_code_sent: &'static str,
    pub confirm_add: &'static str,
    pub status_active: &'static str,
    pub status_suspended: &'static str,
    pub status_pending: &'static str,
    pub status_deleted: &'static str,
    pub my_devices_link: &'static str,
    pub phone_sim_link: &'static str,
    pub hold_wallet: &'static str,
    pub hold_issuer: &'static str,
    pub hold_card_lost: &'static str,
    pub hold_card_stolen: &'static str,
    pub hold_device_lost: &'static str,
    pub pay_title: &'static str,
    pub pay_amount: &'static str,
    pub pay_merchant: &'static str,
    pub pay_order: &'static str,
    pub pay_with: &'static str,
    pub pay_button: &'static str,
    pub pay_password: &'static str,
    pub pay_password_why: &'static str,
    pub paid: &'static str,
    pub not_paid: &'static str,
    pub pay_no_cards: &'static str,
    pub pay_no_order: &'static str,
}

const CHINESE: Texts = Texts {
    html_lang: "zh-CN",
    app_name: "云闪付",
    sandbox: "测试环境",
    other_language: "English",
    other_language_code: "en",
    sign_up_title: "注册云闪付",
    log_in_title: "登录云闪付",
    phone: "手机号",
    password: "登录密码",
    password_rule: "8–64 位，至少含一个字母和一个数字",
    password_again: "再次输入密码",
    sign_up: "注册",
    log_in: "登录",
    have_account: "已有账号？去登录",
    no_account: "还没有账号？去注册",
    home_title: "我的",
    signed_in_as: "已登录",
    cards_title: "我的银行卡",
    cards_empty: "还没有绑定银行卡。",
    log_out: "退出登录",
    form_expired_title: "页面已过期",
    form_expired: "为保护您的账户，此表单已失效。请返回后重新提交。",
    back_to_log_in: "返回登录",
    footer: "cloudpass 测试环境 — 不会发生真实资金往来。",
    bind_card: "添加银行卡",
    card_number: "卡号",
    expiry: "有效期（YYMM）",
    cvn2: "安全码 CVN2（信用卡填写）",
    next: "下一步",
    sms_code: "短信验证码",
    code_sent_to: "验证码已发送至银行预留手机",
    confirm_binding: "确认绑定",
    start_again: "重新输入卡号",
    back_home: "返回我的",
    debit: "借记卡",
    credit: "信用卡",
    card_bound: "银行卡已绑定。",
    remove_card: "解绑",
    card_removed: "银行卡已解绑。",
    devices_title: "我的设备",
    devices_empty: "还没有设备。添加一部手机、一块手表，或把云闪付本身作为支付设备。",
    add_device: "添加设备",
    device_kind: "设备",
    choice_app: "云闪付 App（HCE）",
    choice_watch: "华为手表",
    device_added: "设备已添加。",
    device_lost: "已挂失",
    device_no_cards: "此设备上还没有卡。",
    add_to_device: "添加到此设备",
    bind_first: "先绑定一张银行卡，才能把它添加到设备。",
    token_number: "设备卡号",
    default_card: "默认卡",
    make_default: "设为默认",
    suspend: "暂停",
    resume: "恢复",
    delete: "删除",
    report_lost: "挂失设备",
    report_found: "设备已找回",
    sign_out_device: "退出此设备",
    card_added: "卡片已添加到设备，可以使用了。",
    card_changed: "已更新。",
    device_reported: "设备状态已更新，设备上的卡片随之变更。",
    signed_out_device: "已退出此设备，设备上的卡片已删除。",
    device_code_title: "验证添加卡片",
    device_code_sent: "银行已向预留手机发送验证码",
    confirm_add: "确认添加",
    status_active: "正常",
    status_suspended: "已暂停",
    status_pending: "待验证",
    status_deleted: "已删除",
    my_devices_link: "我的设备与设备卡",
    phone_sim_link: "打开手机模拟器，去 POS 上碰一碰",
    hold_wallet: "您已暂停",
    hold_issuer: "银行已暂停",
    hold_card_lost: "实体卡已挂失",
    hold_card_stolen: "实体卡已报失窃",
    hold_device_lost: "设备已挂失",
    pay_title: "付款",
    pay_amount: "金额",
    pay_merchant: "商户",
    pay_order: "订单号",
    pay_with: "付款卡",
    pay_button: "确认付款",
    pay_password: "支付密码",
    pay_password_why: "金额超过此卡的免密限额，请输入支付密码。",
    paid: "支付成功",
    not_paid: "支付未成功",
    pay_no_cards: "云闪付 App 中还没有可用于付款的卡。在“我的设备”中添加“云闪付 App（HCE）”，并把银行卡添加到其中。",
    pay_no_order: "找不到可支付的订单，请返回商户重新下单。",
};

const ENGLISH: Texts = Texts {
    html_lang: "en",
    app_name: "Cloud QuickPass",
    sandbox: "sandbox",
    other_language: "中文",
    other_language_code: "zh",
    sign_up_title: "Sign up for Cloud QuickPass",
    log_in_title: "Log in to Cloud QuickPass",
    phone: "Mobile number",
    password: "Password",
    password_rule: "8 to 64 characters, with at least one letter and one digit",
    password_again: "Password again",
    sign_up: "Sign up",
    log_in: "Log in",
    have_account: "Have an account? Log in",
    no_account: "No account yet? Sign up",
    home_title: "Me",
    signed_in_as: "Signed in as",
    cards_title: "My cards",
    cards_empty: "No card is bound yet.",
    log_out: "Log out",
    form_expired_title: "This page has expired",
    form_expired: "To protect your account this form no longer works. Go back and send it again.",
    back_to_log_in: "Back to log in",
    footer: "cloudpass sandbox — no real money moves.",
    bind_card: "Add a bank card",
    card_number: "Card number",
    expiry: "Expiry (YYMM)",
    cvn2: "CVN2 (credit cards)",
    next: "Next",
    sms_code: "SMS code",
    code_sent_to: "The bank texted a code to the card's phone",
    confirm_binding: "Bind the card",
    start_again: "Enter the card again",
    back_home: "Back to my page",
    debit: "debit",
    credit: "credit",
    card_bound: "The card is bound.",
    remove_card: "Remove",
    card_removed: "The card is removed.",
    devices_title: "My devices",
    devices_empty: "No device yet. Add a phone, a watch, or use this app itself to pay.",
    add_device: "Add a device",
    device_kind: "Device",
    choice_app: "This app (HCE)",
    choice_watch: "Huawei Watch",
    device_added: "The device is added.",
    device_lost: "reported lost",
    device_no_cards: "No card on this device yet.",
    add_to_device: "Add to this device",
    bind_first: "Bind a bank card first to add it to a device.",
    token_number: "device card",
    default_card: "default",
    make_default: "Make default",
    suspend: "Suspend",
    resume: "Resume",
    delete: "Delete",
    report_lost: "Report lost",
    report_found: "Found it",
    sign_out_device: "Sign out of this device",
    card_added: "The card is on the device and ready to pay.",
    card_changed: "Done.",
    device_reported: "The device is updated, and its cards with it.",
    signed_out_device: "Signed out of the device; its cards were deleted.",
    device_code_title: "Confirm adding the card",
    device_code_sent: "The bank texted a code to",
    confirm_add: "Add the card",
    status_active: "active",
    status_suspended: "suspended",
    status_pending: "awaiting code",
    status_deleted: "deleted",
    my_devices_link: "My devices and device cards",
    phone_sim_link: "Open the phone simulator to tap at a POS",
    hold_wallet: "suspended by you",
    hold_issuer: "suspended by the bank",
    hold_card_lost: "the card is reported lost",
    hold_card_stolen: "the card is reported stolen",
    hold_device_lost: "the device is reported lost",
    pay_title: "Pay",
    pay_amount: "Amount",
    pay_merchant: "Merchant",
    pay_order: "Order",
    pay_with: "Pay with",
    pay_button: "Pay now",
    pay_password: "Payment password",
    pay_password_why: "The amount is over this card's no-password limit: enter the payment password.",
    paid: "Paid",
    not_paid: "Not paid",
    pay_no_cards: "This app has no card to pay with yet. Under My devices add “This app (HCE)” and put a card onto it.",
    pay_no_order: "No payable order has this number; go back to the merchant and order again.",
};

/// An account error in the page's language.
pub fn account_error(language: Language, error: &AccountError) -> String {
    match language {
        Language::English => capitalized(&error.to_string()),
        Language::Chinese => match error {
            AccountError::PhoneInvalid => "请输入以 1 开头的 11 位手机号。".into(),
            AccountError::Password(PasswordError::Length) => "密码为 8–64 位。".into(),
            AccountError::Password(PasswordError::Weak) => {
                "密码至少需要一个字母和一个数字。".into()
            }
            AccountError::Password(PasswordError::Hashing) | AccountError::Unavailable => {
                "服务暂时不可用，请稍后再试。".into()
            }
            AccountError::PasswordsDiffer => "两次输入的密码不一致，请重新输入。".into(),
            AccountError::PhoneTaken => "该手机号已注册，请直接登录。".into(),
            AccountError::WrongCredentials => "手机号或密码错误。".into(),
            AccountError::AddressThrottled => {
                "您的网络地址登录失败次数过多，请一分钟后再试。".into()
            }
            AccountError::Locked(minutes) => {
                format!("密码错误次数过多，账户已锁定，请 {minutes} 分钟后再试。")
            }
        },
    }
}

/// A card error in the page's language.
pub fn card_error(language: Language, error: &CardError) -> String {
    match language {
        Language::English => capitalized(&error.to_string()),
        Language::Chinese => match error {
            CardError::BadNumber => "卡号有误，请核对。".into(),
            CardError::BadExpiry => "请按卡面输入有效期，4 位 YYMM。".into(),
            CardError::BadCvn2 => "安全码为卡背面的 3 位数字。".into(),
            CardError::NoIssuer => "本网络没有发行此卡的银行。".into(),
            CardError::Declined => {
                "银行未通过此卡，请核对卡号、有效期和安全码，或咨询银行。".into()
            }
            CardError::TooManyCards => "每个账户最多绑定 20 张卡，请先删除一张。".into(),
            CardError::TooManyStarts => "此账户尝试的卡片过多，请 10 分钟后再试。".into(),
            CardError::NotSent => "银行未能发送验证码，请联系银行核对预留手机号。".into(),
            CardError::NoBinding => "此次绑定已结束，请重新输入卡号。".into(),
            CardError::WrongCode(left) => format!("验证码错误，还可尝试 {left} 次。"),
            CardError::CodeExpired => "验证码已过期，请重新输入卡号。".into(),
            CardError::TooManyCodes => "验证码错误次数过多，请重新输入卡号。".into(),
            CardError::AlreadyBound => "此卡已绑定到您的账户。".into(),
            CardError::NoCard => "您的账户没有这张卡，可能已被删除。".into(),
            CardError::BindAgain => "此卡绑定时未保存有效期，请删除后重新绑定。".into(),
            CardError::Unavailable => "服务暂时不可用，请稍后再试。".into(),
        },
    }
}

/// A device error in the page's language.
pub fn device_error(language: Language, error: &DeviceError) -> String {
    match language {
        Language::English => capitalized(&error.to_string()),
        Language::Chinese => match error {
            DeviceError::BadChoice => "请选择手机、手表或云闪付 App。".into(),
            DeviceError::TooManyDevices => "每个账户最多登录 10 台设备。".into(),
            DeviceError::NoDevice => "您的账户没有这台设备。".into(),
            DeviceError::SignedOut => "您已退出此设备；请作为新设备重新添加。".into(),
            DeviceError::Card(card) => card_error(language, card),
            DeviceError::AlreadyOnDevice => "这张卡已在此设备上。".into(),
            DeviceError::Declined => "银行不允许把这张卡添加到此设备，请咨询银行。".into(),
            DeviceError::DeviceState(_) => {
                "此设备现在不能添加卡片（可能已挂失或未设置锁屏密码）。".into()
            }
            DeviceError::WrongCode(left) => format!("验证码错误，还可尝试 {left} 次。"),
            DeviceError::CodeExpired => "验证码已过期，请重新添加卡片。".into(),
            DeviceError::TooManyCodes => "验证码错误次数过多，卡片未添加，请重新添加。".into(),
            DeviceError::NoDeviceCard => "此设备上没有这张卡。".into(),
            DeviceError::NotNow(_) => "这张卡现在不能这样操作。".into(),
            DeviceError::NotActive => "只有正常状态的卡可以设为默认卡。".into(),
            DeviceError::Unreachable => "暂时无法连接设备，请重试。".into(),
            DeviceError::Unavailable => "服务暂时不可用，请稍后再试。".into(),
        },
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
        None => String::new(),
    }
}
