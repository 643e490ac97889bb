//! Exchanges of the embedded broker and how they route: direct (the binding key equals the routing
//! key), fanout (every binding) and topic (`*` is one dot-separated word, `#` zero or more), the
//! three kinds Herald's topology declares. Holding messages is `queue.rs`.

use lapin::ExchangeKind;

/// How an exchange picks queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Direct,
    Fanout,
    Topic,
}

impl Kind {
    /// The kinds the embedded broker routes; headers and plugin exchanges are not built.
    pub(crate) fn from_lapin(kind: &ExchangeKind) -> Option<Self> {
        match kind {
            ExchangeKind::Direct => Some(Self::Direct),
            ExchangeKind::Fanout => Some(Self::Fanout),
            ExchangeKind::Topic => Some(Self::Topic),
            ExchangeKind::Headers | ExchangeKind::Custom(_) => None,
        }
    }
}

/// One exchange: its kind and its bindings, in the order they were made.
#[derive(Debug)]
pub(crate) struct Exchange {
    pub(crate) kind: Kind,
    /// `(queue, binding key)`; binding the same pair twice keeps one.
    bindings: Vec<(String, String)>,
}

impl Exchange {
    pub(crate) fn new(kind: Kind) -> Self {
        Self {
            kind,
            bindings: Vec::new(),
        }
    }

    pub(crate) fn bind(&mut self, queue: &str, key: &str) {
        if !self.bindings.iter().any(|(q, k)| q == queue && k == key) {
            self.bindings.push((queue.to_owned(), key.to_owned()));
        }
    }

    /// Forgets every binding to `queue` (the queue was deleted).
    pub(crate) fn unbind_queue(&mut self, queue: &str) {
        self.bindings.retain(|(q, _)| q != queue);
    }

    /// The queues a message with `routing_key` goes to, each once.
    pub(crate) fn route(&self, routing_key: &str) -> Vec<String> {
        let mut queues: Vec<String> = Vec::new();
        for (queue, key) in &self.bindings {
            let matched = match self.kind {
                Kind::Direct => key == routing_key,
                Kind::Fanout => true,
                Kind::Topic => topic_matches(key, routing_key),
            };
            if matched && !queues.contains(queue) {
                queues.push(queue.clone());
            }
        }
        queues
    }
}

/// AMQP topic matching: words are separated by `.`, `*` matches exactly one word and `#` zero or
/// more words.
pub(crate) fn topic_matches(pattern: &str, key: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('.').collect();
    let key: Vec<&str> = key.split('.').collect();
    matches(&pattern, &key)
}

fn matches(pattern: &[&str], key: &[&str]) -> bool {
    match pattern.split_first() {
        None => key.is_empty(),
        Some((&"#", rest)) => (0..=key.len()).any(|skip| matches(rest, &key[skip..])),
        Some((word, rest)) => match key.split_first() {
            Some((first, key_rest)) => (*word == "*" || word == first) && matches(rest, key_rest),
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_patterns() {
        let check = |pattern: &str, key: &str, expected: bool| {
            assert_eq!(topic_matches(pattern, key), expected, "{pattern} ~ {key}");
        };
        check("#", "sent.welcome", true);
        check("#", "", true);
        check("sent.*", "sent.welcome", true);
        check("sent.*", "failed.welcome", false);
        check("sent.*", "sent.a.b", false);
        check("*.welcome", "skipped.welcome", true);
        check("sent.#", "sent", true);
        check("sent.#", "sent.a.b", true);
        check("#.b", "a.b", true);
        check("#.b", "a.c", false);
        check("a.#.c", "a.x.y.c", true);
        check("a.#.c", "a.c", true);
        check("exact", "exact", true);
        check("exact", "exactly", false);
    }

    #[test]
    fn routes_each_queue_once_by_kind() {
        let mut direct = Exchange::new(Kind::Direct);
        direct.bind("q1", "send");
        direct.bind("q2", "other");
        direct.bind("q1", "send");
        assert_eq!(direct.route("send"), ["q1"]);
        assert!(direct.route("nothing").is_empty());

        let mut fanout = Exchange::new(Kind::Fanout);
        fanout.bind("a", "");
        fanout.bind("b", "ignored");
        assert_eq!(fanout.route("anything"), ["a", "b"]);

        let mut topic = Exchange::new(Kind::Topic);
        topic.bind("store", "#");
        topic.bind("sent", "sent.*");
        topic.bind("store", "sent.*");
        assert_eq!(topic.route("sent.c1"), ["store", "sent"]);
        assert_eq!(topic.route("failed.c1"), ["store"]);
        topic.unbind_queue("store");
        assert_eq!(topic.route("sent.c1"), ["sent"]);
    }
}
