//! EC2 Query protocol, the pure half: form-encoding a request's parameters and reading the
//! XML of a reply (its result elements, its `nextToken`, or an error document's code,
//! message and request id). No I/O here; [`super::transport`] sends what this encodes.
//!
//! Element names are matched by local name: EC2 puts every element of a reply in its
//! versioned namespace (`http://ec2.amazonaws.com/doc/2016-11-15/`), emulators sometimes in
//! none.

use roxmltree::{Document, Node};

/// The EC2 API version every request names (the one the AWS SDKs use).
pub const API_VERSION: &str = "2016-11-15";

/// One request's form parameters, in the order added: `Action` and `Version` first, then the
/// operation's members under their EC2 query names (`ImageId.1`, `Filter.1.Value.2`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// `Action=<action>&Version=2016-11-15`.
    pub fn new(action: &str) -> Self {
        Params {
            pairs: vec![
                ("Action".into(), action.into()),
                ("Version".into(), API_VERSION.into()),
            ],
        }
    }

    /// The operation's name (for logs and errors).
    pub fn action(&self) -> &str {
        self.pairs.first().map_or("", |(_, v)| v.as_str())
    }

    /// One scalar member.
    pub fn set(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.pairs.push((name.into(), value.into()));
        self
    }

    /// One boolean member, as EC2 spells it (`true` / `false`).
    pub fn flag(self, name: impl Into<String>, value: bool) -> Self {
        self.set(name, if value { "true" } else { "false" })
    }

    /// A list of scalars, flattened the EC2 way: `Name.1=a&Name.2=b` (numbered from 1). An
    /// empty list sends nothing, as the SDKs do.
    pub fn list<I>(mut self, name: &str, values: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        for (n, value) in values.into_iter().enumerate() {
            self.pairs.push((format!("{name}.{}", n + 1), value.into()));
        }
        self
    }

    /// A list of structures: `member` adds item `n`'s members under the prefix `Name.n`
    /// (so `Filter.1.Name`, `Filter.1.Value.1`, …).
    pub fn structs<T>(
        mut self,
        name: &str,
        items: &[T],
        member: impl Fn(Params, &str, &T) -> Params,
    ) -> Self {
        for (n, item) in items.iter().enumerate() {
            self = member(self, &format!("{name}.{}", n + 1), item);
        }
        self
    }

    /// The `application/x-www-form-urlencoded` request body.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        for (name, value) in &self.pairs {
            if !out.is_empty() {
                out.push('&');
            }
            percent_encode(name, &mut out);
            out.push('=');
            percent_encode(value, &mut out);
        }
        out
    }
}

/// RFC 3986 encoding as the SDKs' query writer does it: unreserved characters stay, every
/// other byte of the UTF-8 form becomes `%XX`.
fn percent_encode(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
}

/// Parses a reply body. Fails on anything that is not well-formed XML (a DTD included: EC2
/// never sends one, and refusing it rules out entity expansion).
pub fn parse(body: &str) -> Result<Document<'_>, String> {
    Document::parse(body).map_err(|e| format!("malformed XML: {e}"))
}

/// The first child element of `node` named `name`.
pub fn child<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

/// The text of the child element `name` (`None` when it is absent; `""` when empty).
pub fn text(node: Node<'_, '_>, name: &str) -> Option<String> {
    child(node, name).map(|c| c.text().unwrap_or("").to_string())
}

/// The `item` elements of the list element `name` (EC2's `<imagesSet><item>…</item></imagesSet>`
/// shape); none when the list is absent.
pub fn items<'a, 'i: 'a>(node: Node<'a, 'i>, name: &str) -> impl Iterator<Item = Node<'a, 'i>> {
    child(node, name)
        .into_iter()
        .flat_map(|list| list.children())
        .filter(|c| c.is_element() && c.tag_name().name() == "item")
}

/// The reply's `nextToken`, when there is another page (an empty token means none).
pub fn next_token(root: Node<'_, '_>) -> Option<String> {
    text(root, "nextToken").filter(|t| !t.is_empty())
}

/// What an error reply says: `<Response><Errors><Error><Code/><Message/></Error></Errors>
/// <RequestID/></Response>`. The first `Error` anywhere is taken, so the other AWS query
/// shape (`<ErrorResponse><Error>…</Error><RequestId/></ErrorResponse>`) reads the same.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorDocument {
    pub code: Option<String>,
    pub message: Option<String>,
    pub request_id: Option<String>,
}

/// Reads an error reply's body; `None` when it is not XML at all (a proxy's HTML page, an
/// empty body).
pub fn error_document(body: &str) -> Option<ErrorDocument> {
    let doc = parse(body).ok()?;
    let root = doc.root_element();
    let error = root
        .descendants()
        .find(|n| n.is_element() && n.tag_name().name() == "Error");
    let non_empty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
    let request_id = root
        .descendants()
        .find(|n| n.is_element() && matches!(n.tag_name().name(), "RequestID" | "RequestId"))
        .and_then(|n| n.text())
        .map(str::to_string);
    Some(ErrorDocument {
        code: non_empty(error.and_then(|e| text(e, "Code"))),
        message: non_empty(error.and_then(|e| text(e, "Message"))),
        request_id: non_empty(request_id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_and_version_come_first_and_lists_are_numbered_from_one() {
        let p = Params::new("DescribeSnapshots")
            .list("Owner", ["self"])
            .structs(
                "Filter",
                &[("description", vec!["a b", "c*"])],
                |p, at, (name, values)| {
                    p.set(format!("{at}.Name"), *name)
                        .list(&format!("{at}.Value"), values.iter().copied())
                },
            )
            .flag("DryRun", false);
        assert_eq!(p.action(), "DescribeSnapshots");
        assert_eq!(
            p.encode(),
            "Action=DescribeSnapshots&Version=2016-11-15&Owner.1=self&Filter.1.Name=description\
             &Filter.1.Value.1=a%20b&Filter.1.Value.2=c%2A&DryRun=false"
        );
    }

    #[test]
    fn empty_lists_send_nothing() {
        let p = Params::new("DescribeImages").list("ImageId", Vec::<String>::new());
        assert_eq!(p.encode(), "Action=DescribeImages&Version=2016-11-15");
    }

    #[test]
    fn everything_but_unreserved_characters_is_percent_encoded() {
        let mut out = String::new();
        percent_encode("Az09-_.~ /+=&%(*)é", &mut out);
        assert_eq!(out, "Az09-_.~%20%2F%2B%3D%26%25%28%2A%29%C3%A9");
    }

    #[test]
    fn an_ec2_error_document_gives_code_message_and_request_id() {
        let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>InvalidAMIID.NotFound</Code><Message>The image id '[ami-1]' does not exist</Message></Error></Errors><RequestID>ea966190-f9aa-478e-9ede-example</RequestID></Response>"#;
        assert_eq!(
            error_document(body),
            Some(ErrorDocument {
                code: Some("InvalidAMIID.NotFound".into()),
                message: Some("The image id '[ami-1]' does not exist".into()),
                request_id: Some("ea966190-f9aa-478e-9ede-example".into()),
            })
        );
    }

    #[test]
    fn the_generic_query_error_shape_reads_the_same() {
        let body = "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>\
                    <Message>Rate exceeded</Message></Error><RequestId>r-1</RequestId></ErrorResponse>";
        let doc = error_document(body).unwrap();
        assert_eq!(doc.code.as_deref(), Some("Throttling"));
        assert_eq!(doc.request_id.as_deref(), Some("r-1"));
    }

    #[test]
    fn an_error_reply_that_is_not_xml_has_no_document() {
        for body in [
            "",
            "<html><body>Bad Gateway",
            "Service Unavailable",
            "<a><b></a>",
        ] {
            assert_eq!(error_document(body), None, "{body:?}");
        }
        let doc = error_document("<Response><Errors/></Response>").unwrap();
        assert_eq!(doc, ErrorDocument::default());
    }

    #[test]
    fn hostile_bodies_are_errors_or_empty_reads_never_panics() {
        let deep = format!("{}{}", "<a>".repeat(50_000), "</a>".repeat(50_000));
        let unclosed = "<Response>".repeat(50_000);
        for body in [
            deep.as_str(),
            unclosed.as_str(),
            "\u{0}",
            "<?xml?>",
            "<a x='1' x='2'/>",
        ] {
            let _ = error_document(body);
            if let Ok(doc) = parse(body) {
                let root = doc.root_element();
                assert_eq!(items(root, "imagesSet").count(), 0);
                assert_eq!(next_token(root), None);
            }
        }
    }

    #[test]
    fn a_dtd_is_refused() {
        let body = r#"<!DOCTYPE r [<!ENTITY a "aaaa">]><r>&a;</r>"#;
        assert!(parse(body).is_err());
    }

    #[test]
    fn items_next_token_and_text_read_namespaced_replies() {
        let body = r#"<DescribeSnapshotsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
            <requestId>r</requestId>
            <snapshotSet><item><snapshotId>snap-1</snapshotId></item><item><snapshotId>snap-2</snapshotId></item></snapshotSet>
            <nextToken>t2</nextToken></DescribeSnapshotsResponse>"#;
        let doc = parse(body).unwrap();
        let root = doc.root_element();
        let ids: Vec<_> = items(root, "snapshotSet")
            .filter_map(|i| text(i, "snapshotId"))
            .collect();
        assert_eq!(ids, ["snap-1", "snap-2"]);
        assert_eq!(next_token(root).as_deref(), Some("t2"));
        assert_eq!(items(root, "imagesSet").count(), 0);
        let last = parse("<R><nextToken/></R>").unwrap();
        assert_eq!(next_token(last.root_element()), None);
    }
}
