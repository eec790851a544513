"""What users write instead: a boto3 Lambda that loops over delete_image (the bench baseline)."""
import boto3

imagebuilder = boto3.client("imagebuilder")  # module level: part of the cold start


def handler(event, context):
    arns = event.get("imageBuildVersionArns") or [event["imageBuildVersionArn"]]
    deleted, failed = [], []
    for arn in arns:
        try:
            imagebuilder.delete_image(imageBuildVersionArn=arn)
            deleted.append(arn)
        except imagebuilder.exceptions.ResourceNotFoundException:
            deleted.append(arn)
        except Exception as err:  # noqa: BLE001 - report and carry on, as such scripts do
            failed.append({"imageBuildVersionArn": arn, "error": str(err)})
    return {"deleted": len(deleted), "failed": failed}
