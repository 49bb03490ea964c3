"""The pages a member sees after clicking an unsubscribe link (Japanese, no script, no outside resource).

The confirmation page changes nothing: mail scanners and link previews open every link,
so only its button (a POST) unsubscribes. It posts the RFC 8058 body
``List-Unsubscribe=One-Click``, the same request a mail client's one-click sends.
"""

from __future__ import annotations

from html import escape

from fastapi.responses import HTMLResponse

CHANNEL_NAMES = {"email": "メール", "line": "LINE", "sms": "SMS（ショートメッセージ）",
                 "push": "アプリのプッシュ通知", "dm": "ダイレクトメール（郵送）"}
# The token in the URL is the member's key to this page: no cache, no index, no referrer.
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
}
_STYLE = ("body{font-family:sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;line-height:1.7;color:#222}"
          "button{font-size:1rem;padding:.6rem 1.6rem;border-radius:.4rem;border:1px solid #888;background:#f4f4f4}")


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (f'<!doctype html><html lang="ja"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f'<meta name="robots" content="noindex,nofollow"><title>{escape(title)}</title>'
            f'<style>{_STYLE}</style></head><body><main><h1>{escape(title)}</h1>{body}</main></body></html>')
    return HTMLResponse(html, status_code=status, headers=_HEADERS)


def confirmation(channel: str, action: str) -> HTMLResponse:
    name = escape(CHANNEL_NAMES.get(channel, channel))
    return _page("配信停止の確認", (
        f"<p>{name}でのお知らせの配信を停止します。よろしければ、下のボタンを押してください。</p>"
        f'<form method="post" action="{escape(action)}">'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        f'<button type="submit">{name}の配信を停止する</button></form>'
        "<p><small>このページを開いただけでは、配信は停止されません。</small></p>"))


def done(channel: str) -> HTMLResponse:
    name = escape(CHANNEL_NAMES.get(channel, channel))
    return _page("配信を停止しました", (
        f"<p>{name}でのお知らせの配信を停止しました。</p>"
        "<p>行き違いで、すでに送信準備に入っていたお知らせが届く場合がございます。ご了承ください。</p>"))


def invalid() -> HTMLResponse:
    return _page("リンクが無効です", (
        "<p>このリンクは無効です。メールに記載されたリンクをもう一度お確かめいただくか、"
        "ショップのお問い合わせ窓口までご連絡ください。</p>"), status=400)


def unavailable(retry_after: int) -> HTMLResponse:
    response = _page("ただいまご利用いただけません", (
        "<p>ただいま配信停止を受け付けられません。お手数ですが、しばらくしてからもう一度お試しください。</p>"),
        status=503)
    response.headers["Retry-After"] = str(retry_after)
    return response
