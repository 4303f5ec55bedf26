"""Helpers for the web console's tests: a cookie-keeping HTTP client and a headless Chromium.

The browser is Debian's `chromium` driven through Debian's `chromedriver` (both installed by
deploy/ensure-docker.sh, found through tests.support.tool), by Selenium. It is kept off the
network: every host name but the loopback ones fails to resolve, and Chromium's background
services (updates, sync, metrics) are off, so a test run sends nothing off this machine.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.cookiejar
import json
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from dockyard import auth
from tests.support import tool, wait_for

CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # the suite runs as root
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--no-pings",
    "--window-size=1400,1000",
)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # show the redirect itself to the test


@dataclass
class Answer:
    status: int
    headers: Any
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class ConsoleClient:
    """A browser's view of the console over plain HTTP: cookies kept, redirects shown."""

    base: str
    jar: http.cookiejar.CookieJar = field(default_factory=http.cookiejar.CookieJar)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        opener = urllib.request.build_opener(
            _NoRedirect(), urllib.request.HTTPCookieProcessor(self.jar)
        )
        req = urllib.request.Request(
            self.base + path, data=body, headers=headers or {}, method=method
        )
        try:
            with opener.open(req, timeout=20) as r:
                return Answer(r.status, r.headers, r.read())
        except urllib.error.HTTPError as err:
            return Answer(err.code, err.headers, err.read())

    def get(self, path: str) -> Answer:
        return self.request("GET", path)

    def sign_in(self, key_id: str, secret: str, origin: str | None = None) -> Answer:
        form = urllib.parse.urlencode({"accessKeyId": key_id, "secretAccessKey": secret})
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if origin is not None:
            headers["Origin"] = origin
        return self.request("POST", "/ui/signin", form.encode(), headers)

    def csrf(self) -> str:
        page = self.get("/ui/").body.decode()
        marker = '<meta name="dockyard-csrf" content="'
        start = page.index(marker) + len(marker)
        return page[start : page.index('"', start)]

    def act(self, action: str, body: dict[str, Any], csrf: str | None) -> Answer:
        headers = {"Content-Type": "application/json"}
        if csrf is not None:
            headers["X-CSRF-Token"] = csrf
        return self.request("POST", f"/ui/api/{action}", json.dumps(body).encode(), headers)


def spki_hash(pem: bytes) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)) of a certificate: what Chromium's
    --ignore-certificate-errors-spki-list names to trust one CA (the lab controller's)."""
    cert = x509.load_pem_x509_certificate(pem)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@contextlib.contextmanager
def chromium(also_reach: str = "", trust_ca: bytes | None = None) -> Iterator[Any]:
    """A headless Chromium under Selenium; quit (with its driver) however the test ends.
    It reaches loopback and `also_reach` (a lab address) only; `trust_ca`: a CA (PEM) whose
    certificates it accepts, as `aws --ca-bundle` does."""
    options = webdriver.ChromeOptions()
    options.binary_location = tool("chromium")
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    allowed = ["localhost", "127.0.0.1", *([also_reach] if also_reach else [])]
    rules = " , ".join(["MAP * ~NOTFOUND", *(f"EXCLUDE {host}" for host in allowed)])
    options.add_argument(f"--host-resolver-rules={rules}")
    if trust_ca is not None:
        options.add_argument(f"--ignore-certificate-errors-spki-list={spki_hash(trust_ca)}")
    with tempfile.TemporaryDirectory(prefix="dyk-chromium-") as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(options=options, service=Service(tool("chromedriver")))
        try:
            driver.set_page_load_timeout(30)
            yield driver
        finally:
            driver.quit()


def browser_sign_in(driver: Any, base: str, creds: auth.Credentials) -> None:
    """Sign in through the page's form, as a person would, and wait for the console."""
    driver.get(base + "/ui/")
    wait_for(lambda: driver.find_elements(By.ID, "accessKeyId"), 20, what="the sign-in form")
    driver.find_element(By.ID, "accessKeyId").send_keys(creds.access_key_id)
    driver.find_element(By.ID, "secretAccessKey").send_keys(creds.secret_access_key)
    driver.find_element(By.ID, "submit").click()
    wait_for(lambda: "live" == live_badge(driver), 30, what="the console's live stream")


def live_badge(driver: Any) -> str:
    found = driver.find_elements(By.ID, "live")
    return str(found[0].text) if found else ""


def table_rows(driver: Any, table: str) -> list[dict[str, str]]:
    """A table's rows as {column header: cell text}, read by the page's own JavaScript."""
    script = """
      const t = document.querySelector(arguments[0]);
      const heads = [...t.querySelectorAll('thead th')].map(th => th.textContent);
      return [...t.querySelectorAll('tbody tr')].map(tr => {
        const row = {key: tr.dataset.key};
        [...tr.children].forEach((td, i) => { row[heads[i] || 'actions'] = td.innerText; });
        return row;
      });
    """
    return list(driver.execute_script(script, table))
