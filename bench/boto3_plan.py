"""What users write instead of a retention plan's listing: a boto3 Lambda that lists every
build version of the account serially (the bench baseline of the `plan` rows).

`{"strategy": "version"}` (default): ListImages (owner=Self, includeDeprecated) page after
page, then ListImageBuildVersions of each image version, one call at a time — the listing
the function does, without its concurrency. `{"strategy": "account"}`: ListImageBuildVersions
without imageVersionArn, page after page (every build version of the region in one chain).
Returns how many builds it listed and the calls it made; it applies no rules.
"""
import boto3

imagebuilder = boto3.client("imagebuilder")  # module level: part of the cold start


def pages(call, key, **kwargs):
    """Every item of a paginated call, and the number of calls it took."""
    items, calls, token = [], 0, None
    while True:
        page = call(maxResults=25, **({"nextToken": token} if token else {}), **kwargs)
        calls += 1
        items.extend(page.get(key, []))
        token = page.get("nextToken")
        if not token:
            return items, calls


def handler(event, context):
    if event.get("strategy") == "account":
        builds, calls = pages(imagebuilder.list_image_build_versions, "imageSummaryList")
        return {"strategy": "account", "scanned": len(builds), "calls": calls}
    versions, calls = pages(imagebuilder.list_images, "imageVersionList", owner="Self", includeDeprecated=True)
    builds = {}
    for version in versions:
        listed, n = pages(imagebuilder.list_image_build_versions, "imageSummaryList",
                          imageVersionArn=version["arn"])
        calls += n
        for b in listed:
            builds[b["arn"]] = b  # an ARN listed twice is kept once
    return {"strategy": "version", "scanned": len(builds), "versions": len(versions), "calls": calls}
