/*
 * cloudpass.js — the Cloud QuickPass payment SDK for an institution's H5 pages.
 *
 *   <script src="https://<cloudpass>/sdk/cloudpass.js"></script>
 *   CloudPass.startPay({ tn: tn, mode: "01", returnUrl: "https://shop.example/paid" });
 *
 * startPay leaves the page for cloudpass, which picks the flow by itself (docs/sdk.md):
 * control pay in the app when it is installed and logged in, the app's cashier when it is
 * installed but not logged in, WAP pay otherwise. The payer comes back to returnUrl (the
 * current page by default) with the result in the fragment, which handlePaymentResult reads:
 *
 *   CloudPass.handlePaymentResult(function (code, resultData) { ... });
 *
 * code is "success", "fail" or "cancel" (synchronous, signed: verify resultData's sign over
 * its data with the platform's signing certificate), or "unknown" (WAP pay, or the bank has
 * not answered: wait for the notification or query the order). The notification and the
 * query are what count; the synchronous result only tells the page what to show.
 */
(function (global) {
  "use strict";

  var script = global.document && global.document.currentScript;
  var base = script && script.src ? new URL(script.src).origin : global.location.origin;
  var CODES = ["success", "fail", "cancel", "unknown"];

  function SdkError(message) {
    var error = new Error("CloudPass: " + message);
    error.name = "CloudPassError";
    return error;
  }

  function startPay(options) {
    options = options || {};
    var tn = String(options.tn || "");
    if (!/^[1-9][0-9]{20}$/.test(tn)) {
      throw SdkError("tn must be the 21-digit transaction number appTransReq.do answered");
    }
    var mode = options.mode;
    if (mode !== "00" && mode !== "01") {
      throw SdkError('mode must be "00" (production) or "01" (test)');
    }
    var back = String(options.returnUrl || global.location.href.split("#")[0]);
    if (!/^https?:\/\//.test(back) || back.indexOf("#") >= 0) {
      throw SdkError("returnUrl must be an absolute http(s) address without a fragment");
    }
    var query = "tn=" + encodeURIComponent(tn) +
      "&mode=" + encodeURIComponent(mode) +
      "&return=" + encodeURIComponent(back);
    global.location.assign(base + "/sdk/start?" + query);
  }

  /* The result the payer came back with, or null: { code, resultData } */
  function readResult(hash) {
    var fields = new URLSearchParams(String(hash || "").replace(/^#/, ""));
    var code = fields.get("pay_result");
    if (CODES.indexOf(code) < 0) {
      return null;
    }
    var resultData = null;
    var raw = fields.get("result_data");
    if (raw) {
      try {
        resultData = JSON.parse(raw);
      } catch (ignored) {
        resultData = null;
      }
    }
    return { code: code, resultData: resultData };
  }

  /* Calls callback(code, resultData) when this page is the return from a payment, clears
   * the fragment so a reload does not report it twice, and says whether it did. */
  function handlePaymentResult(callback) {
    var result = readResult(global.location.hash);
    if (!result) {
      return false;
    }
    if (global.history && global.history.replaceState) {
      global.history.replaceState(null, "", global.location.href.split("#")[0]);
    }
    callback(result.code, result.resultData);
    return true;
  }

  global.CloudPass = {
    version: "1.0.0",
    startPay: startPay,
    handlePaymentResult: handlePaymentResult,
    readResult: readResult
  };
})(window);
