//! Reading a versioned wire message (`SendJob`, `DeliveryResult`) from bytes, with the reason an
//! operator reads when the bytes are poison: not JSON, not an object, no version, an unknown
//! version, or the field serde refused. The version is looked at first, so a v2 message says
//! "unknown version" rather than naming a field v1 does not know. Reasons name fields, never
//! values (recipients and external ids may be personal).

use serde::de::DeserializeOwned;
use serde_json::Value;

/// A wire message with a version field `v`.
pub trait Versioned: DeserializeOwned {
    /// The name operators know it by (`SendJob`).
    const NAME: &'static str;
    /// The version this build reads.
    const VERSION: u32;
    /// The message's own `v`.
    fn version(&self) -> u32;
}

/// Decodes `body` as `T` of this build's version; `Err` holds why it is poison.
pub fn decode<T: Versioned>(body: &[u8]) -> Result<T, String> {
    // One parse on the happy path; a failure is parsed again only to explain itself.
    let message: T = match serde_json::from_slice(body) {
        Ok(message) => message,
        Err(error) => return Err(explain::<T>(body, &error)),
    };
    if message.version() != T::VERSION {
        return Err(unknown_version::<T>(message.version()));
    }
    Ok(message)
}

fn unknown_version<T: Versioned>(found: impl std::fmt::Display) -> String {
    format!(
        "unknown {} version {found} (this build reads v{})",
        T::NAME,
        T::VERSION
    )
}

fn explain<T: Versioned>(body: &[u8], error: &serde_json::Error) -> String {
    let probe: Value = match serde_json::from_slice(body) {
        Ok(probe) => probe,
        Err(error) => return format!("not JSON: {}", without_position(&error)),
    };
    let Value::Object(fields) = &probe else {
        return format!("not a {}: the message is not a JSON object", T::NAME);
    };
    match fields.get("v") {
        None => format!("not a {}: missing field `v`", T::NAME),
        Some(Value::Number(v)) if v.as_u64() == Some(u64::from(T::VERSION)) => {
            format!(
                "not a {} v{}: {}",
                T::NAME,
                T::VERSION,
                without_position(error)
            )
        }
        Some(other) => unknown_version::<T>(other),
    }
}

/// serde's message without " at line 1 column 42": the position means nothing to an operator.
fn without_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(index) => text[..index].to_owned(),
        None => text,
    }
}

impl Versioned for crate::SendJob {
    const NAME: &'static str = "SendJob";
    const VERSION: u32 = crate::JOB_VERSION;
    fn version(&self) -> u32 {
        self.v
    }
}

impl Versioned for crate::DeliveryResult {
    const NAME: &'static str = "DeliveryResult";
    const VERSION: u32 = crate::RESULT_VERSION;
    fn version(&self) -> u32 {
        self.v
    }
}
