package origin

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/yatagarasu/yatagarasu/internal/httperr"
)

// MsgBodyCut is the error message of the 502 answered when S3's body failed before any part of
// the response went to the client (a retry may well succeed).
const MsgBodyCut = "S3 body failed before the response started"

// ReadPrefix fills buf from body before the response headers are written, so a body that fails
// early becomes a clean 502 instead of a dropped connection. length is the announced
// Content-Length (-1: unknown); body must not run past it (net/http's client bodies stop there). It returns the bytes read and whether they are the whole body;
// an error means the body failed (or was shorter than announced) and nothing may be sent.
func ReadPrefix(body io.Reader, buf []byte, length int64) (n int, whole bool, err error) {
	if length >= 0 && length <= int64(len(buf)) {
		buf = buf[:length]
	}
	for n < len(buf) {
		var m int
		m, err = body.Read(buf[n:])
		n += m
		if errors.Is(err, io.EOF) {
			if length >= 0 && int64(n) < length {
				return n, false, fmt.Errorf("s3 body ended after %d of %d bytes: %w", n, length, io.ErrUnexpectedEOF)
			}
			return n, true, nil
		}
		if err != nil {
			return n, false, fmt.Errorf("read s3 body after %d bytes: %w", n, err)
		}
	}
	return n, length >= 0 && int64(n) == length, nil
}

// WriteBodyCut answers 502 with the JSON error body for a body that failed before the response
// started; the caller must not have set object headers on w yet.
func WriteBodyCut(w http.ResponseWriter, requestID string) httperr.Body {
	b := httperr.New(http.StatusBadGateway, MsgBodyCut, requestID)
	httperr.Write(w, b)
	return b
}
