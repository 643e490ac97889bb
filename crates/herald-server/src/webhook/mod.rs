//! `GET`/`POST /webhook`: handshake, signature, publishing to herald.events (issue 5).
