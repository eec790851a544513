//! EC2 XML: reads moto's DescribeInstances / DescribeLaunchTemplates /
//! DescribeLaunchTemplateVersions / DescribeImages answers, splices `lastLaunchedTime` and
//! `deregistrationProtection` into DescribeImages items without re-serialising the rest, and
//! renders the front's own answers (DescribeImageReferences, DescribeImageAttribute, errors).

use roxmltree::{Document, Node};

use super::references::{ImageReference, Instance, TemplateVersion};

/// One page of items read from a moto answer, with its `nextToken`, or why it did not parse.
pub(crate) type Page<T> = Result<(Vec<T>, Option<String>), String>;

/// The namespace EC2 (and moto) puts on every answer.
const NS: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

/// Escapes text for element content.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn child<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

fn items<'a, 'i>(node: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children()
        .filter(|c| c.is_element() && c.tag_name().name() == "item")
}

/// Text of the child element `name`, trimmed; `None` when absent or empty.
fn text(node: Node, name: &str) -> Option<String> {
    child(node, name)
        .and_then(|c| c.text())
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

fn parse(body: &str) -> Result<Document<'_>, String> {
    Document::parse(body).map_err(|e| format!("moto answered XML that does not parse: {e}"))
}

/// Instances and the next-page token from a DescribeInstances answer.
pub(crate) fn instances(body: &str) -> Page<Instance> {
    let doc = parse(body)?;
    let root = doc.root_element();
    let mut out = Vec::new();
    if let Some(set) = child(root, "reservationSet") {
        for reservation in items(set) {
            let owner = text(reservation, "ownerId");
            let Some(instances) = child(reservation, "instancesSet") else {
                continue;
            };
            for i in items(instances) {
                let (Some(id), Some(image)) = (text(i, "instanceId"), text(i, "imageId")) else {
                    continue;
                };
                let state = child(i, "instanceState")
                    .and_then(|s| text(s, "name"))
                    .unwrap_or_default();
                out.push(Instance {
                    instance_id: id,
                    image_id: image,
                    state,
                    owner_id: owner.clone(),
                });
            }
        }
    }
    Ok((out, text(root, "nextToken")))
}

/// Launch template IDs and the next-page token from a DescribeLaunchTemplates answer.
pub(crate) fn launch_template_ids(body: &str) -> Page<String> {
    let doc = parse(body)?;
    let root = doc.root_element();
    let ids = child(root, "launchTemplates")
        .map(|set| {
            items(set)
                .filter_map(|t| text(t, "launchTemplateId"))
                .collect()
        })
        .unwrap_or_default();
    Ok((ids, text(root, "nextToken")))
}

/// Versions and the next-page token from a DescribeLaunchTemplateVersions answer.
pub(crate) fn template_versions(body: &str) -> Page<TemplateVersion> {
    let doc = parse(body)?;
    let root = doc.root_element();
    let mut out = Vec::new();
    if let Some(set) = child(root, "launchTemplateVersionSet") {
        for v in items(set) {
            let (Some(id), Some(version)) = (
                text(v, "launchTemplateId"),
                text(v, "versionNumber").and_then(|n| n.parse::<u64>().ok()),
            ) else {
                continue;
            };
            out.push(TemplateVersion {
                template_id: id,
                version,
                image_id: child(v, "launchTemplateData").and_then(|d| text(d, "imageId")),
                created_by: text(v, "createdBy"),
            });
        }
    }
    Ok((out, text(root, "nextToken")))
}

/// The `Code` of an EC2 error answer (`<Response><Errors><Error><Code>`), if it is one.
pub(crate) fn error_code(body: &str) -> Option<String> {
    let doc = Document::parse(body).ok()?;
    let errors = child(doc.root_element(), "Errors")?;
    text(child(errors, "Error")?, "Code")
}

/// The two attributes the front adds to DescribeImages items.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Extra<'a> {
    pub last_launched_time: Option<&'a str>,
    pub deregistration_protection: Option<&'a str>,
}

/// DescribeImages answer with `lastLaunchedTime` / `deregistrationProtection` appended to each
/// `imagesSet` item that `lookup` has values for (replacing any moto sent). Every other byte
/// stays as moto wrote it. `None` when the body is not a DescribeImages answer.
pub(crate) fn enrich_images<'a>(body: &str, lookup: impl Fn(&str) -> Extra<'a>) -> Option<String> {
    let doc = Document::parse(body).ok()?;
    let set = child(doc.root_element(), "imagesSet")?;
    // (byte offset, text to insert) or (range to drop, ""), applied back to front.
    let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    for item in items(set) {
        let Some(id) = text(item, "imageId") else {
            continue;
        };
        let extra = lookup(&id);
        let mut insert = String::new();
        for (name, value) in [
            ("lastLaunchedTime", extra.last_launched_time),
            ("deregistrationProtection", extra.deregistration_protection),
        ] {
            let Some(value) = value else { continue };
            if let Some(old) = child(item, name) {
                edits.push((old.range(), String::new()));
            }
            insert.push_str(&format!("<{name}>{}</{name}>", escape(value)));
        }
        let end = item.range().end;
        let close = "</item>".len();
        if insert.is_empty() || end < close || body.get(end - close..end) != Some("</item>") {
            continue;
        }
        edits.push((end - close..end - close, insert));
    }
    edits.sort_by_key(|e| std::cmp::Reverse(e.0.start));
    let mut out = body.to_string();
    for (range, text) in edits {
        if out.is_char_boundary(range.start) && out.is_char_boundary(range.end) {
            out.replace_range(range, &text);
        }
    }
    Some(out)
}

/// A DescribeImageReferences answer.
pub(crate) fn references_response(
    request_id: &str,
    refs: &[ImageReference],
    next_token: Option<&str>,
) -> String {
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeImageReferencesResponse \
         xmlns=\"{NS}\"><requestId>{}</requestId><imageReferenceSet>",
        escape(request_id)
    );
    for r in refs {
        out.push_str(&format!(
            "<item><imageId>{}</imageId><resourceType>{}</resourceType><arn>{}</arn></item>",
            escape(&r.image_id),
            escape(&r.resource_type),
            escape(&r.arn)
        ));
    }
    out.push_str("</imageReferenceSet>");
    if let Some(t) = next_token {
        out.push_str(&format!("<nextToken>{}</nextToken>", escape(t)));
    }
    out.push_str("</DescribeImageReferencesResponse>");
    out
}

/// A DescribeImageAttribute answer for one attribute; `value: None` renders the attribute
/// without a value (`<lastLaunchedTime/>`), as EC2 does for an AMI never launched.
pub(crate) fn image_attribute_response(
    request_id: &str,
    image_id: &str,
    attribute: &str,
    value: Option<&str>,
) -> String {
    let attr = match value {
        Some(v) => format!("<{attribute}><value>{}</value></{attribute}>", escape(v)),
        None => format!("<{attribute}/>"),
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeImageAttributeResponse \
         xmlns=\"{NS}\"><requestId>{}</requestId><imageId>{}</imageId>{attr}\
         </DescribeImageAttributeResponse>",
        escape(request_id),
        escape(image_id)
    )
}

/// An EC2 error answer (`<Response><Errors><Error>…</Error></Errors><RequestID>`).
pub(crate) fn error_response(code: &str, message: &str, request_id: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code>\
         <Message>{}</Message></Error></Errors><RequestID>{}</RequestID></Response>",
        escape(code),
        escape(message),
        escape(request_id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMAGES: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<DescribeImagesResponse \
        xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15\"><imagesSet><item><blockDeviceMapping>\
        <item><deviceName>/dev/sda1</deviceName></item></blockDeviceMapping><imageId>ami-1\
        </imageId><lastLaunchedTime>old</lastLaunchedTime></item><item><imageId>ami-2</imageId>\
        </item></imagesSet><requestId>r</requestId></DescribeImagesResponse>";

    #[test]
    fn enrichment_touches_only_the_items_it_has_values_for() {
        // GIVEN values for ami-1 only
        let out = enrich_images(IMAGES, |id| Extra {
            last_launched_time: (id == "ami-1").then_some("2026-11-28T10:00:00Z"),
            deregistration_protection: (id == "ami-1").then_some("enabled & <x>"),
        })
        .unwrap();
        // THEN ami-1's item ends with both (old value replaced, text escaped), nested items
        // and ami-2 are unchanged
        assert!(out.contains(
            "<imageId>ami-1</imageId><lastLaunchedTime>2026-11-28T10:00:00Z</lastLaunchedTime>\
             <deregistrationProtection>enabled &amp; &lt;x&gt;</deregistrationProtection></item>"
        ));
        assert!(!out.contains("old"));
        assert!(out.contains("<item><deviceName>/dev/sda1</deviceName></item>"));
        assert!(out.contains("<item><imageId>ami-2</imageId></item>"));
        // AND with no values the body is byte-identical
        assert_eq!(enrich_images(IMAGES, |_| Extra::default()).unwrap(), IMAGES);
        assert!(enrich_images("not xml", |_| Extra::default()).is_none());
    }

    #[test]
    fn reads_nested_moto_answers_and_errors() {
        let body = "<DescribeInstancesResponse><reservationSet><item><ownerId>1</ownerId>\
            <instancesSet><item><instanceId>i-1</instanceId><imageId>ami-1</imageId>\
            <blockDeviceMapping><item><imageId>nope</imageId></item></blockDeviceMapping>\
            <instanceState><code>48</code><name>terminated</name></instanceState></item>\
            </instancesSet></item></reservationSet><nextToken>t</nextToken>\
            </DescribeInstancesResponse>";
        let (list, next) = instances(body).unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].state, "terminated");
        assert_eq!(list[0].owner_id.as_deref(), Some("1"));
        assert_eq!(next.as_deref(), Some("t"));
        assert!(instances("<x").is_err());
        let err = error_response("InvalidAMIID.NotFound", "a < b", "rid");
        assert_eq!(error_code(&err).as_deref(), Some("InvalidAMIID.NotFound"));
        assert_eq!(error_code("<DescribeImagesResponse/>"), None);
    }
}
