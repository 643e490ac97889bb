//! `herald serve`'s admin API as the README calls it: a bearer token, JSON answers.

use serde_json::Value;

/// serve's admin API with the README's token.
pub(crate) struct Api {
    /// `http://host:port`.
    pub(crate) base: String,
    /// The bearer token.
    pub(crate) token: String,
}

impl Api {
    /// `GET path`, which must answer 200 with JSON.
    pub(crate) async fn get(&self, path: &str) -> Value {
        let response = reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), 200, "GET {path}");
        serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON")
    }

    /// `POST path` with `body`, which must answer `expected`; its JSON (or null).
    pub(crate) async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: &str,
        expected: u16,
    ) -> Value {
        let response = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", content_type)
            .body(body.to_owned())
            .send()
            .await
            .expect("POST");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        assert_eq!(status, expected, "POST {path}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }
}
