/*
 * Amounts as people read them: wei (a decimal string from the API) shown as exact ETH.
 * BigInt and string arithmetic only: a float would round amounts above 2^53 wei (~0.009 ETH).
 */
(function () {
  "use strict";

  const DECIMALS = 18;

  /* "15000000000000000" -> "0.015"; "" for a missing amount. */
  function formatEth(wei) {
    if (wei === null || wei === undefined || wei === "") return "";
    const value = BigInt(wei);
    const sign = value < 0n ? "-" : "";
    const digits = (value < 0n ? -value : value).toString().padStart(DECIMALS + 1, "0");
    const whole = digits.slice(0, -DECIMALS);
    const fraction = digits.slice(-DECIMALS).replace(/0+$/, "");
    return sign + (fraction ? `${whole}.${fraction}` : whole);
  }

  /* A span reading "0.015 ETH" with the exact wei in its title; "—" for a missing amount. */
  function amount(wei) {
    const span = document.createElement("span");
    span.className = "amount";
    if (wei === null || wei === undefined || wei === "") {
      span.textContent = "—";
      return span;
    }
    span.textContent = `${formatEth(wei)} ETH`;
    span.title = `${BigInt(wei).toString()} wei`;
    return span;
  }

  /* Round amounts for an axis from 0 to at least `max` wei: steps of 1, 2 or 5 x 10^k wei, so
     every tick label is short and exact. */
  function ticks(max, count = 4) {
    const top = BigInt(max);
    if (top <= 0n) return [0n, 1n];
    const raw = (top + BigInt(count) - 1n) / BigInt(count);
    const magnitude = 10n ** BigInt(raw.toString().length - 1);
    const step = [1n, 2n, 5n, 10n].map((m) => m * magnitude).find((s) => s >= raw);
    const values = [0n];
    while (values[values.length - 1] < top) values.push(values[values.length - 1] + step);
    return values;
  }

  window.MarketplaceMoney = { formatEth, amount, ticks };
})();
