// Sorting and grouping of the claims ledger (book/ledger.md): buttons above the table regroup
// its rows by chapter, person, verdict or the side the result favours. Without JavaScript the
// table stays in chapter order. Nothing here loads anything from the network.
(function () {
  "use strict";
  const KEYS = [["chapter", "Chapter"], ["who", "Person"], ["verdict", "Verdict"], ["favours", "Side favoured"]];
  const VERDICT_ORDER = { supports: 0, contradicts: 1, mixed: 2 };

  function setup(table) {
    const body = table.tBodies[0];
    if (!body) return;
    const rows = Array.from(body.rows).filter(r => r.querySelector(".ca-ledger-key"));
    const data = r => r.querySelector(".ca-ledger-key").dataset;
    const columns = table.tHead ? table.tHead.rows[0].cells.length : 6;
    const bar = document.createElement("div");
    bar.className = "ca-ledger-controls";
    bar.setAttribute("role", "group");
    bar.appendChild(document.createTextNode("Group rows by: "));
    const buttons = [];
    function group(key) {
      body.querySelectorAll("tr.ca-group-row").forEach(g => g.remove());
      const sorted = rows.slice().sort((a, b) => {
        const ka = data(a)[key], kb = data(b)[key];
        const c = key === "verdict" ? VERDICT_ORDER[ka] - VERDICT_ORDER[kb] : ka.localeCompare(kb);
        return c || (+data(a).order) - (+data(b).order);
      });
      let last = null;
      for (const r of sorted) {
        const k = data(r)[key];
        if (k !== last) {
          const g = document.createElement("tr");
          g.className = "ca-group-row";
          g.dataset.group = k;
          const td = document.createElement("td");
          td.colSpan = columns;
          const n = sorted.filter(x => data(x)[key] === k).length;
          td.textContent = `${k} (${n} row${n === 1 ? "" : "s"})`;
          g.appendChild(td);
          body.appendChild(g);
          last = k;
        }
        body.appendChild(r);
      }
      buttons.forEach(b => b.setAttribute("aria-pressed", String(b.dataset.key === key)));
      table.dataset.groupedBy = key;
    }
    for (const [key, label] of KEYS) {
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.key = key;
      b.textContent = label;
      b.addEventListener("click", () => group(key));
      buttons.push(b);
      bar.appendChild(b);
    }
    table.parentNode.insertBefore(bar, table);
    group("chapter");
  }

  function init() {
    document.querySelectorAll("table.ca-ledger-table").forEach(setup);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
