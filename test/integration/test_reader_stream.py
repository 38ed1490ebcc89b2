"""Reader downloads stream in pieces: a large file arrives whole and intact, a
large index registers every chunk it names, and a client that goes away in the
middle of a download leaves the server healthy (no leak, session usable)."""

import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as H  # noqa: E402
import pbs_proto as pp  # noqa: E402

STORE = "stream"
BIG = 5 * 1024 * 1024 + 12345  # several 1 MiB pieces and a short last one


class ReaderStreamTest(unittest.TestCase, pp.CaseMixin):
    @classmethod
    def setUpClass(cls):
        cls.srv = H.Cairn(tls=False, log_level="info")
        cls.srv.admin("datastore", "create", STORE, cls.srv.datastore_path(STORE), check=True)
        cls.payload = os.urandom(BIG)
        b = pp.BackupSession(cls.srv, STORE, "host", "big", 1000)
        b.open()
        # An index larger than one 1 MiB piece, so its entries are registered
        # across piece boundaries; few distinct chunks keep the upload short.
        distinct = [pp.Chunk(os.urandom(64) + i.to_bytes(4, "little")) for i in range(97)]
        # The last chunk appears only at the very end of the index.
        chunks = [distinct[i % 96] for i in range(29999)] + [distinct[96]]
        b.upload_dynamic("many.didx", chunks, batch=2000)
        b.upload_blob("big.blob", cls.payload)
        b.upload_manifest()
        b.finish()
        cls.chunks = chunks

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        report = cls.srv.sanitizer_reports()
        cls.srv.close()
        if report:
            raise AssertionError("cairnd reported a sanitizer error:\n" + report)

    def reader(self):
        r = pp.ReaderSession(self.srv, STORE, "host", "big", 1000)
        return self.open_session(r)

    def test_large_blob_arrives_whole(self):
        r = self.reader()
        try:
            self.assertEqual(self.payload, r.restore_blob("big.blob"))
        finally:
            r.close()

    def test_large_index_registers_every_chunk(self):
        r = self.reader()
        try:
            raw = r.download("many.didx")
            self.assertGreater(len(raw), 1024 * 1024)
            idx = pp.Index.parse(raw)
            self.assertEqual(len(self.chunks), len(idx.entries))
            # The last entry came in the last piece: it is registered too.
            for c in (self.chunks[0], self.chunks[50], self.chunks[-1]):
                self.assertEqual(c.data, pp.blob_decode(r.chunk(c.digest)))
        finally:
            r.close()

    def test_client_gone_mid_download(self):
        r = self.reader()
        try:
            for _ in range(3):
                s = socket.create_connection((self.srv.host, self.srv.port), timeout=10)
                req = ("GET /api2/json/reader/%s/download?file-name=big.blob HTTP/1.1\r\n"
                       "Host: x\r\nAuthorization: %s\r\n\r\n"
                       % (r.id, self.srv.auth_header()))
                s.sendall(req.encode())
                got = s.recv(65536)
                self.assertIn(b"200 OK", got)
                s.close()  # far from the end of the file
            time.sleep(0.3)
            # The session still serves, and its end is not held up by the
            # aborted downloads.
            self.assertEqual(self.payload, r.restore_blob("big.blob"))
        finally:
            self.assertOk(r.close())


if __name__ == "__main__":
    unittest.main(verbosity=2)
