package sniff

import "testing"

func TestClassify(t *testing.T) {
	tests := []struct {
		in   string
		want Kind
	}{
		{"", NeedMore},
		{"\x16\x03\x01", TLS},
		{"\x80\x2e\x01", TLS},
		{"GET / HTTP/1.1\r\n", HTTP},
		{"G", HTTP},
		{"<policy", NeedMore},
		{"<policy-file-request/>", NeedMore},
		{PolicyRequest, FlashPolicy},
		{PolicyRequest + "junk", FlashPolicy},
		{"<html>", HTTP},
	}
	for _, tt := range tests {
		if got := Classify([]byte(tt.in)); got != tt.want {
			t.Errorf("Classify(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
