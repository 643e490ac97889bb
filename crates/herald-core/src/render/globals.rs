//! `Globals`: a user's fields and attributes seen by Liquid as top-level variables, borrowed
//! rather than copied into a `liquid::Object` (rendering runs once per user, a million times a
//! run). Every name resolves: one the user lacks reads as `nil`, so `{{ x | default: "y" }}`
//! works and `{{ x }}` renders empty instead of failing with "Unknown variable".

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::fmt;

use liquid::model::{DisplayCow, KStringCow, State, Value};
use liquid::{ObjectView, ValueView};
use time::format_description::well_known::Rfc3339;

use crate::user::User;

static NIL: Value = Value::Nil;

/// The built-in names, looked up before the attribute columns.
const BUILT_INS: [&str; 4] = ["external_id", "messenger_id", "psid", "last_inbound_at"];

/// A user as Liquid globals.
pub(crate) struct Globals<'u> {
    user: &'u User,
    /// `last_inbound_at` as RFC 3339, formatted only if a template asks for it.
    last_inbound_at: OnceCell<String>,
    /// Attributes whose text is a JSON array or object (as `/users/track` stores nested
    /// values), as Liquid values: `{{ prefs.color }}`, `{% for c in colors %}`.
    structured: BTreeMap<&'u str, Value>,
}

impl<'u> Globals<'u> {
    pub(crate) fn new(user: &'u User) -> Self {
        let structured = user
            .attributes
            .iter()
            .filter_map(|(name, text)| Some((name.as_str(), structured(text)?)))
            .collect();
        Self {
            user,
            last_inbound_at: OnceCell::new(),
            structured,
        }
    }

    fn lookup(&self, name: &str) -> Option<&dyn ValueView> {
        match name {
            "external_id" => Some(&self.user.external_id),
            "messenger_id" | "psid" => self.user.messenger_id.as_ref().map(as_view),
            "last_inbound_at" => self.user.last_inbound_at.map(|at| {
                let text = self
                    .last_inbound_at
                    .get_or_init(|| at.format(&Rfc3339).unwrap_or_default());
                as_view(text)
            }),
            _ => match self.structured.get(name) {
                Some(value) => Some(value as &dyn ValueView),
                None => self.user.attributes.get(name).map(as_view),
            },
        }
    }

    fn present(&self) -> impl Iterator<Item = (&str, &dyn ValueView)> + '_ {
        let built_ins = BUILT_INS
            .iter()
            .filter_map(|name| self.lookup(name).map(|value| (*name, value)));
        let columns = self
            .user
            .attributes
            .iter()
            .filter(|(name, _)| !BUILT_INS.contains(&name.as_str()))
            .map(|(name, value)| match self.structured.get(name.as_str()) {
                Some(structured) => (name.as_str(), structured as &dyn ValueView),
                None => (name.as_str(), as_view(value)),
            });
        built_ins.chain(columns)
    }
}

/// The Liquid value of an attribute text that is a JSON array or object; `None` for any other
/// text (which stays a string).
fn structured(text: &str) -> Option<Value> {
    let trimmed = text.trim_start();
    if !(trimmed.starts_with('[') || trimmed.starts_with('{')) {
        return None;
    }
    let json: serde_json::Value = serde_json::from_str(text).ok()?;
    liquid::model::to_value(&json).ok()
}

fn as_view(value: &String) -> &dyn ValueView {
    value
}

impl fmt::Debug for Globals<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The user's own Debug hides the PSID and attribute values.
        f.debug_struct("Globals").field("user", self.user).finish()
    }
}

impl ValueView for Globals<'_> {
    fn as_debug(&self) -> &dyn fmt::Debug {
        self
    }

    fn render(&self) -> DisplayCow<'_> {
        DisplayCow::Borrowed(&"")
    }

    fn source(&self) -> DisplayCow<'_> {
        DisplayCow::Borrowed(&"")
    }

    fn type_name(&self) -> &'static str {
        "object"
    }

    fn query_state(&self, state: State) -> bool {
        match state {
            State::Truthy => true,
            State::DefaultValue | State::Empty | State::Blank => false,
        }
    }

    fn to_kstr(&self) -> KStringCow<'_> {
        KStringCow::from_static("")
    }

    fn to_value(&self) -> Value {
        Value::Object(
            self.present()
                .map(|(name, value)| (name.to_owned().into(), value.to_value()))
                .collect(),
        )
    }

    fn as_object(&self) -> Option<&dyn ObjectView> {
        Some(self)
    }
}

impl ObjectView for Globals<'_> {
    fn as_value(&self) -> &dyn ValueView {
        self
    }

    fn size(&self) -> i64 {
        i64::try_from(self.present().count()).unwrap_or(i64::MAX)
    }

    fn keys<'k>(&'k self) -> Box<dyn Iterator<Item = KStringCow<'k>> + 'k> {
        Box::new(self.present().map(|(name, _)| KStringCow::from_ref(name)))
    }

    fn values<'k>(&'k self) -> Box<dyn Iterator<Item = &'k dyn ValueView> + 'k> {
        Box::new(self.present().map(|(_, value)| value))
    }

    fn iter<'k>(&'k self) -> Box<dyn Iterator<Item = (KStringCow<'k>, &'k dyn ValueView)> + 'k> {
        Box::new(
            self.present()
                .map(|(name, value)| (KStringCow::from_ref(name), value)),
        )
    }

    /// Every name "exists": a missing one reads as nil (see the module doc).
    fn contains_key(&self, _index: &str) -> bool {
        true
    }

    fn get<'s>(&'s self, index: &str) -> Option<&'s dyn ValueView> {
        Some(self.lookup(index).unwrap_or(&NIL))
    }
}
