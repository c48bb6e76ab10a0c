#pragma once
// Event texts for the validate-once tests (issue #12): a short valid history with every outcome
// of sections 2 and 3, an event breaking each rule of spec section 1, events whose form is wrong,
// values that are not objects, and lines that are not JSON at all. Each text is one line (no
// '\n'); the tests feed them to an ingress and compare its answers with `parse_event`'s.

#include <initializer_list>
#include <string>
#include <vector>

namespace tctest {

struct ValidationCase {
  enum Kind {
    valid,     ///< passes `parse_event`
    rule,      ///< passes `decode_event`, fails `validate` (a rule of spec section 1)
    form,      ///< JSON, but fails `decode_event` (not an object, a field missing or mistyped)
    not_json,  ///< not RFC 8259 JSON in valid UTF-8: an NDJSON line or a Kafka message, never
               ///< an element of an application/json body (which would be a 400)
  };
  std::string text;
  Kind kind;
  bool json() const { return kind != not_json; }
};

/// Every kind of event text, in an order whose valid events give ACCEPTED, DUPLICATE, STALE and
/// each processor rejection (conflict, unknown trade, trade cancelled) when run in sequence.
inline std::vector<ValidationCase> validation_cases() {
  const std::string part = R"("account": "A", "book": "B", "security": "S")";
  auto ev = [&](const std::string& id_version_type, const std::string& rest) {
    return "{" + id_version_type + ", " + part + rest + "}";
  };
  const std::string buy = R"(, "side": "BUY", "quantity": "100", "price": "187.25")";
  auto amounts = [](const std::string& side, const std::string& q, const std::string& p) {
    return ", \"side\": " + side + ", \"quantity\": " + q + ", \"price\": " + p;
  };
  auto with_part = [&](const std::string& account, const std::string& book,
                       const std::string& security) {
    return R"({"trade_id": "P", "version": 1, "type": "NEW", "account": )" + account +
           ", \"book\": " + book + ", \"security\": " + security + buy + "}";
  };
  const std::string x65(65, 'x');
  std::string euros66;
  for (int i = 0; i < 22; ++i) euros66 += "\xE2\x82\xAC";

  std::vector<ValidationCase> c;
  auto add = [&c](ValidationCase::Kind kind, std::initializer_list<std::string> texts) {
    for (const auto& t : texts) c.push_back({t, kind});
  };
  // ---- valid events, every outcome ---------------------------------------------------------
  add(ValidationCase::valid,
      {
          {ev(R"("trade_id": "T1", "version": 1, "type": "NEW")", buy)},  // ACCEPTED
          {ev(R"("trade_id": "T1", "version": 2, "type": "AMEND")",
              amounts(R"("SELL")", R"("40")", "2"))},                     // ACCEPTED
          {ev(R"("trade_id": "T1", "version": 1, "type": "NEW")", buy)},  // DUPLICATE
          {ev(R"("trade_id": "T1", "version": 2, "type": "AMEND")",
              amounts(R"("SELL")", R"("41")", "2"))},                       // conflict
          {ev(R"("trade_id": "T9", "version": 2, "type": "CANCEL")", "")},  // unknown
          {ev(R"("trade_id": "T2", "version": 1, "type": "NEW")", amounts(R"("SELL")", "7", "0"))},
          {ev(R"("trade_id": "T2", "version": 3, "type": "AMEND")",
              amounts(R"("BUY")", R"("0.000001")", R"("99999.99999999")"))},
          {ev(R"("trade_id": "T2", "version": 2, "type": "AMEND")", buy)},  // STALE
          // A CANCEL's side, quantity and price are ignored whatever they hold.
          {ev(R"("trade_id": "T2", "version": 4, "type": "CANCEL")",
              amounts(R"("HOLD")", "-1", R"("abc")"))},
          {ev(R"("trade_id": "T2", "version": 5, "type": "AMEND")", buy)},  // cancelled
          {ev(R"("trade_id": "T3", "version": 1, "type": "NEW", "comment": {"x": [1, 2.5e3, null]})",
              buy)},  // unknown field
          {R"({"trade_id": "T4", "version": 1, "type": "NEW", "account": "A_B", "book": "C", )"
           R"("security": "\u00e9\u20ac", "side": "BUY", "quantity": 1000000000000, )"
           R"("price": 1000000000})"},  // bounds
      });
  // ---- well formed, but breaking a rule of section 1 (validate) -----------------------------
  add(ValidationCase::rule,
      {
          {ev(R"("trade_id": "", "version": 1, "type": "NEW")", buy)},
          {ev(R"("trade_id": ")" + x65 + R"(", "version": 1, "type": "NEW")", buy)},
          {ev(R"("trade_id": "a\u0001", "version": 1, "type": "NEW")", buy)},
          {ev(R"("trade_id": "a\u007f", "version": 1, "type": "NEW")", buy)},
          {ev("\"trade_id\": \"a\x7f\", \"version\": 1, \"type\": \"NEW\"", buy)},  // raw DEL
          {ev(R"("trade_id": "a\u0000b", "version": 1, "type": "NEW")", buy)},
          {ev(R"("trade_id": "T5", "version": 0, "type": "NEW")", buy)},
          {ev(R"("trade_id": "T5", "version": -1, "type": "NEW")", buy)},
          {ev(R"("trade_id": "T5", "version": 2, "type": "NEW")", buy)},
          {ev(R"("trade_id": "T5", "version": 1, "type": "AMEND")", buy)},
          {ev(R"("trade_id": "T5", "version": 1, "type": "CANCEL")", "")},
          {with_part(R"("")", R"("B")", R"("S")")},
          {with_part(R"("A")", "\"" + x65 + "\"", R"("S")")},
          {with_part(R"("A")", R"("B")", R"("\u001f")")},
          {with_part("\"" + euros66 + "\"", R"("B")", R"("S")")},  // 66 bytes
          {ev(R"("trade_id": "T5", "version": 1, "type": "NEW")",
              amounts(R"("BUY")", R"("0")", "1"))},
          {ev(R"("trade_id": "T5", "version": 1, "type": "NEW")",
              amounts(R"("BUY")", R"("1000000000000.000001")", "1"))},
          {ev(R"("trade_id": "T5", "version": 1, "type": "NEW")",
              amounts(R"("BUY")", "1", R"("1000000000.5")"))},
      });
  // ---- JSON, but not of the event's form (decode_event) --------------------------------------
  add(ValidationCase::form,
      {
          {ev(R"("trade_id": "T6", "version": 1.0, "type": "NEW")", buy)},
          {ev(R"("trade_id": "T6", "version": 1e0, "type": "NEW")", buy)},
          {ev(R"("trade_id": "T6", "version": "1", "type": "NEW")", buy)},
          {ev(R"("trade_id": "T6", "version": 9223372036854775808, "type": "NEW")", buy)},
          {ev(R"("trade_id": "T6", "type": "NEW")", buy)},
          {ev(R"("trade_id": 7, "version": 1, "type": "NEW")", buy)},
          {ev(R"("version": 1, "type": "NEW")", buy)},
          {ev(R"("trade_id": "T6", "version": 1, "type": "new")", buy)},
          {ev(R"("trade_id": "T6", "version": 1, "type": "NEW")", amounts(R"("HOLD")", "1", "1"))},
          {ev(R"("trade_id": "T6", "version": 1, "type": "NEW")",
              R"(, "quantity": "1", "price": "1")")},
          {ev(R"("trade_id": "T6", "version": 2, "type": "AMEND")",
              R"(, "side": "BUY", "price": "1")")},
          {ev(R"("trade_id": "T6", "version": 1, "type": "NEW")", amounts(R"("BUY")", "-1", "1"))},
          {ev(R"("trade_id": "T6", "version": 1, "type": "NEW")", amounts(R"("BUY")", "1e3", "1"))},
          {ev(R"("trade_id": "T6", "version": 1, "type": "NEW")",
              amounts(R"("BUY")", R"(".5")", "1"))},
          {ev(R"("trade_id": "T6", "version": 1, "type": "NEW")",
              amounts(R"("BUY")", R"("")", "1"))},
          {ev(R"("trade_id": "T6", "version": 1, "type": "NEW")",
              amounts(R"("BUY")", R"(" 1")", "1"))},
          {ev(R"("trade_id": "T6", "version": 1, "type": "NEW")",
              amounts(R"("BUY")", R"("NaN")", "1"))},
          {ev(R"("trade_id": "T6", "version": 1, "type": "NEW")",
              amounts(R"("BUY")", "1", R"("-0")"))},
          {ev(R"("trade_id": "T6", "version": 1, "type": "NEW")",
              amounts(R"("BUY")", "1", "true"))},
          {ev(R"("trade_id": "T6", "version": 1, "type": "NEW", "trade_id": "T6")",
              buy)},  // repeated
          // Too many fractional digits (counted as written): refused with the form, before
          // validate.
          {ev(R"("trade_id": "T6", "version": 1, "type": "NEW")",
              amounts(R"("BUY")", R"("1.0000001")", "1"))},
          {ev(R"("trade_id": "T6", "version": 1, "type": "NEW")",
              amounts(R"("BUY")", "1", R"("0.000000010")"))},
          {ev(R"("trade_id": "T6", "version": 1, "type": "NEW")",
              amounts(R"("BUY")", "1", "0.123456789"))},
          {R"({})"},
          {R"(7)"},
          {R"("T1")"},
          {R"(null)"},
          {R"([])"},
          {R"([{"trade_id": "T1"}])"},
      });
  // ---- not JSON: NDJSON lines and Kafka messages only ----------------------------------------
  add(ValidationCase::not_json,
      {
          {R"({"trade_id": "X",)"},
          {ev(R"("trade_id": "T7", "version": 1, "type": "NEW")", buy) + " x"},
          {
              ev(R"("trade_id": "T7", "version": 1, "type": "NEW")",
                 amounts(R"("BUY")", "NaN", "1")),
          },
          {ev("\"trade_id\": \"T\xC3\", \"version\": 1, \"type\": \"NEW\"", buy)},  // bad UTF-8
          {ev(R"("trade_id": "\uD800", "version": 1, "type": "NEW")", buy)},  // lone surrogate
          {ev("\"trade_id\": \"a\tb\", \"version\": 1, \"type\": \"NEW\"", buy)},
          {ev(R"("trade_id": "T7", "version": 1, "type": "NEW")", buy) + std::string(1, '\0')},
          {"\xEF\xBB\xBF" + ev(R"("trade_id": "T7", "version": 1, "type": "NEW")", buy)},
          {R"({'trade_id': 'T7'})"},
      });
  return c;
}

}  // namespace tctest
