"""`kamicore webhook register|update|list|delete`: the Webhooks service, called on a running
server with an admin key (like `kamicore supplier`). The signing secret is read from a file,
never from the command line (where `ps` would show it), and no reply ever carries it."""

from __future__ import annotations

import sys
from pathlib import Path

from . import remote, suppliers

SCOPES = ("all", "channel", "partner")


def add_commands(commands, target_help: str) -> None:
    webhook = commands.add_parser("webhook", help="webhook endpoints (on a running server, "
                                  "with an admin key)")
    actions = webhook.add_subparsers(dest="webhook_command", required=True)
    writes = []
    for name, help_text in (("register", "register an endpoint"),
                            ("update", "replace an endpoint's definition (the secret is kept "
                                       "unless --secret-file is given: a rotation)")):
        parser = actions.add_parser(name, help=help_text)
        parser.add_argument("webhook_id")
        parser.add_argument("--url", required=True, help="http:// or https:// URL to POST to")
        parser.add_argument("--scope", choices=SCOPES, default="all",
                            help="whose events: all, a channel's or a partner's")
        parser.add_argument("--scope-id", default="",
                            help="channel: the sales channel; partner: the partner key's id")
        parser.add_argument("--event-type", action="append", default=[],
                            help="only this type (repeatable), e.g. order.paid; default: all")
        parser.add_argument("--retry-seconds", type=int, default=0,
                            help="retried this long before it counts as failing (default "
                            "3 days)")
        parser.add_argument("--secret-file", required=name == "register",
                            help="a file holding the signing secret (a trailing line break "
                            "is dropped)")
        parser.add_argument("--disabled", action="store_true", help="send it nothing")
        parser.set_defaults(run_without_engine=command_write, method=name)
        writes.append(parser)
    listing = actions.add_parser("list", help="every endpoint and its delivery state as JSON "
                                 "lines (no secrets)")
    listing.set_defaults(run_without_engine=command_list)
    delete = actions.add_parser("delete", help="delete an endpoint")
    delete.add_argument("webhook_id")
    delete.set_defaults(run_without_engine=command_delete)
    for parser in (*writes, listing, delete):
        parser.add_argument("--target", help=target_help)
        parser.add_argument("--key", help="admin API key (or $KAMICORE_KEY, or --key-file)")
        parser.add_argument("--key-file")


def _call(args, method: str, request):
    from ..v1 import webhooks_pb2_grpc
    return remote.unary(args, webhooks_pb2_grpc.WebhooksStub, method, request)


def command_write(args) -> int:
    from ..v1 import webhooks_pb2
    try:
        secret = Path(args.secret_file).read_bytes().rstrip(b"\r\n") if args.secret_file \
            else b""
    except OSError as error:
        print(f"error: --secret-file: {error.strerror}", file=sys.stderr)
        return 1
    webhook = webhooks_pb2.Webhook(
        webhook_id=args.webhook_id, url=args.url,
        scope=webhooks_pb2.WebhookScope.Value(f"WEBHOOK_SCOPE_{args.scope.upper()}"),
        scope_id=args.scope_id, event_types=args.event_type, retry_seconds=args.retry_seconds,
        signing_secret=secret, enabled=not args.disabled)
    if args.method == "register":
        reply, code = _call(args, "RegisterWebhook",
                            webhooks_pb2.RegisterWebhookRequest(webhook=webhook))
        done = webhooks_pb2.REGISTER_WEBHOOK_STATUS_REGISTERED
    else:
        reply, code = _call(args, "UpdateWebhook",
                            webhooks_pb2.UpdateWebhookRequest(webhook=webhook))
        done = webhooks_pb2.UPDATE_WEBHOOK_STATUS_UPDATED
    if reply is None:
        return code
    suppliers.print_reply(reply)
    return 0 if reply.status == done else 1


def command_list(args) -> int:
    from ..v1 import webhooks_pb2
    token = ""
    while True:
        reply, code = _call(args, "ListWebhooks", webhooks_pb2.ListWebhooksRequest(
            page_token=token))
        if reply is None:
            return code
        for status in reply.webhooks:
            suppliers.print_reply(status)
        token = reply.next_page_token
        if not token:
            return 0


def command_delete(args) -> int:
    from ..v1 import webhooks_pb2
    reply, code = _call(args, "DeleteWebhook", webhooks_pb2.DeleteWebhookRequest(
        webhook_id=args.webhook_id))
    if reply is None:
        return code
    suppliers.print_reply(reply)
    return 0 if reply.status == webhooks_pb2.DELETE_WEBHOOK_STATUS_DELETED else 1


__all__ = ["add_commands"]
