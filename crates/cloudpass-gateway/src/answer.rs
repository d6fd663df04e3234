//! Answers: a raw UPACP form echoing the request's common fields, with `respCode` and
//! `respMsg`, signed by the platform (signMethod 01, 5.1.0, `signPubKeyCert`).

use cloudpass_upacp::code::{RespCode, resp_msg};
use cloudpass_upacp::request::Refusal;
use cloudpass_upacp::{Form, signing};

use crate::Gateway;

/// Fields every answer repeats from its request, when the request had them.
const ECHOED: &[&str] = &[
    "encoding",
    "bizType",
    "txnType",
    "txnSubType",
    "accessType",
    "merId",
    "orderId",
    "txnTime",
    "txnAmt",
    "currencyCode",
    "reqReserved",
    "reserved",
    "subMerId",
    "acqInsCode",
];

impl Gateway {
    /// The signed answer to `request`: its echoed fields, `fields`, and the code.
    pub(crate) fn answer(
        &self,
        request: Option<&Form>,
        code: RespCode,
        detail: &str,
        fields: Form,
    ) -> String {
        self.answer_without(request, code, detail, fields, None)
    }

    /// The answer to a refused request. A refusal's detail starts with the field it is
    /// about (`orderId must be …`, `backUrl is missing`): that field is not echoed, since an
    /// error never repeats the value it refuses.
    pub(crate) fn refusal(&self, request: Option<&Form>, refusal: &Refusal) -> String {
        let refused = refusal.detail.split_whitespace().next();
        self.answer_without(request, refusal.code, &refusal.detail, Form::new(), refused)
    }

    fn answer_without(
        &self,
        request: Option<&Form>,
        code: RespCode,
        detail: &str,
        fields: Form,
        refused: Option<&str>,
    ) -> String {
        let mut answer = Form::new();
        if let Some(request) = request {
            for key in ECHOED.iter().filter(|key| Some(**key) != refused) {
                if let Some(value) = request.non_blank(key) {
                    answer.set(key, value);
                }
            }
        }
        for (key, value) in fields.iter() {
            answer.set(key, value);
        }
        answer
            .set("version", "5.1.0")
            .set("encoding", "UTF-8")
            .set("respCode", code.code())
            .set("respMsg", resp_msg(code, detail))
            .set("signPubKeyCert", self.signer.certificate.to_pem_crlf());
        if let Err(error) = signing::sign_rsa(&mut answer, &self.signer.key) {
            // Only a broken key gets here; the merchant sees an unsigned answer and refuses it.
            tracing::error!(error = %error, "gateway: an answer could not be signed");
        }
        answer.to_raw()
    }
}
