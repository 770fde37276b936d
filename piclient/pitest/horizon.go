package pitest

import (
	"encoding/json"
	"math/big"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// horizonTime is how Horizon prints times.
const horizonTime = "2006-01-02T15:04:05Z"

type horizonLink struct {
	Href string `json:"href"`
}

// horizonTx is Horizon's transaction resource (the fields a checker needs).
type horizonTx struct {
	Links struct {
		Self       horizonLink `json:"self"`
		Operations horizonLink `json:"operations"`
	} `json:"_links"`
	ID             string `json:"id"`
	PagingToken    string `json:"paging_token"`
	Successful     bool   `json:"successful"`
	Hash           string `json:"hash"`
	Ledger         int64  `json:"ledger"`
	CreatedAt      string `json:"created_at"`
	SourceAccount  string `json:"source_account"`
	FeeCharged     string `json:"fee_charged"`
	OperationCount int    `json:"operation_count"`
	MemoType       string `json:"memo_type"`
	Memo           string `json:"memo"`
}

// horizonOp is Horizon's payment operation resource.
type horizonOp struct {
	ID                    string `json:"id"`
	PagingToken           string `json:"paging_token"`
	TransactionSuccessful bool   `json:"transaction_successful"`
	SourceAccount         string `json:"source_account"`
	Type                  string `json:"type"`
	TypeI                 int    `json:"type_i"`
	CreatedAt             string `json:"created_at"`
	TransactionHash       string `json:"transaction_hash"`
	AssetType             string `json:"asset_type"`
	From                  string `json:"from"`
	To                    string `json:"to"`
	Amount                string `json:"amount"`
}

type horizonOps struct {
	Links struct {
		Self horizonLink `json:"self"`
	} `json:"_links"`
	Embedded struct {
		Records []horizonOp `json:"records"`
	} `json:"_embedded"`
}

// serveHorizon serves GET /horizon/transactions/{txid} and
// GET /horizon/transactions/{txid}/operations. No authentication.
func (s *Server) serveHorizon(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/horizon/transactions/")
	parts := strings.Split(rest, "/")
	if !ok || parts[0] == "" || len(parts) > 2 || (len(parts) == 2 && parts[1] != "operations") {
		writeProblem(w, http.StatusNotFound, "Resource Missing", "The resource at the url requested was not found.")
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeProblem(w, http.StatusMethodNotAllowed, "Method Not Allowed", "use GET")
		return
	}
	txid, ops := parts[0], len(parts) == 2
	s.mu.Lock()
	var ct chainTx
	found := s.txs[txid] != nil
	if found {
		ct = *s.txs[txid]
	}
	s.mu.Unlock()
	s.serveCall(w, r, EndpointHorizon, ct.paymentID, func() answer {
		if !found {
			return problemAnswer(http.StatusNotFound, "Resource Missing", "The resource at the url requested was not found.")
		}
		if ops {
			return horizonAnswer(s.operationsOf(&ct))
		}
		return horizonAnswer(s.transactionOf(&ct))
	})
}

func (s *Server) transactionOf(ct *chainTx) horizonTx {
	var t horizonTx
	t.Links.Self.Href = s.HorizonURL + "/transactions/" + ct.txid
	t.Links.Operations.Href = s.HorizonURL + "/transactions/" + ct.txid + "/operations"
	t.ID, t.Hash = ct.txid, ct.txid
	t.PagingToken = pagingToken(ct.ledger, 0)
	t.Successful = ct.successful
	t.Ledger = ct.ledger
	t.CreatedAt = ct.createdAt.Format(horizonTime)
	t.SourceAccount = ct.from
	t.FeeCharged = "100000"
	t.OperationCount = 1
	t.MemoType, t.Memo = "text", ct.memo
	return t
}

func (s *Server) operationsOf(ct *chainTx) horizonOps {
	var o horizonOps
	o.Links.Self.Href = s.HorizonURL + "/transactions/" + ct.txid + "/operations"
	o.Embedded.Records = []horizonOp{{
		ID:                    pagingToken(ct.ledger, 1),
		PagingToken:           pagingToken(ct.ledger, 1),
		TransactionSuccessful: ct.successful,
		SourceAccount:         ct.from,
		Type:                  "payment",
		TypeI:                 1,
		CreatedAt:             ct.createdAt.Format(horizonTime),
		TransactionHash:       ct.txid,
		AssetType:             "native",
		From:                  ct.from,
		To:                    ct.to,
		Amount:                horizonAmount(ct.amount),
	}}
	return o
}

// pagingToken makes a Horizon-like id from a ledger and an operation index.
func pagingToken(ledger int64, op int64) string {
	return strconv.FormatInt(ledger<<32|4096|op, 10)
}

// horizonAmount prints an amount as Horizon does: exactly 7 decimals.
func horizonAmount(a piclient.Amount) string {
	r := a.Rat()
	if r == nil {
		return string(a)
	}
	return new(big.Rat).Set(r).FloatString(7)
}

func horizonAnswer(v any) answer {
	body, _ := json.Marshal(v)
	return answer{status: http.StatusOK, contentType: "application/hal+json; charset=utf-8", body: body}
}

// problem is Horizon's error body (RFC 7807).
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

func problemAnswer(status int, title, detail string) answer {
	kind := strings.ToLower(strings.ReplaceAll(http.StatusText(status), " ", "_"))
	if status == http.StatusNotFound {
		kind = "not_found"
	}
	body, _ := json.Marshal(problem{Type: "https://stellar.org/horizon-errors/" + kind, Title: title, Status: status, Detail: detail})
	return answer{status: status, contentType: "application/problem+json; charset=utf-8", body: body}
}

func writeProblem(w http.ResponseWriter, status int, title, detail string) {
	a := problemAnswer(status, title, detail)
	writeBody(w, a.status, a.contentType, a.body)
}
