package piguard

import (
	"context"
	"errors"
	"net/http"

	"go.uber.org/zap"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/horizon"
)

// crossCheck reads the transaction txid from the Pi blockchain (Horizon) and
// checks that it settles p: successful, memo = payment id, one payment of
// the payment's amount to the app's wallet. It is a no-op unless horizon_url
// is configured; when it is, every completion costs one more read.
func (h *Handler) crossCheck(ctx context.Context, p *piclient.Payment, txid string) *guardError {
	if h.horizon == nil {
		return nil
	}
	tx, err := h.horizon.Transaction(ctx, txid)
	if err != nil {
		if errors.Is(err, horizon.ErrNotFound) {
			h.metrics.blockchainFails.WithLabelValues("mismatch").Inc()
			ge := refuse(http.StatusConflict, "blockchain_mismatch", "the transaction is not on the blockchain")
			ge.cause = err
			return ge
		}
		h.metrics.blockchainFails.WithLabelValues("unavailable").Inc()
		ge := refuse(http.StatusBadGateway, "blockchain_unavailable", "the Pi blockchain API could not be read; retry the request")
		ge.Retryable, ge.cause = true, err
		if errors.Is(err, context.DeadlineExceeded) {
			ge.Status, ge.Code = http.StatusGatewayTimeout, "blockchain_timeout"
		}
		return ge
	}
	settled := *p
	settled.Transaction = &piclient.Transaction{TxID: txid}
	if err := horizon.Check(tx, &settled, h.Wallet); err != nil {
		h.metrics.blockchainFails.WithLabelValues("mismatch").Inc()
		h.logger.Error("blockchain cross-check failed: the transaction does not settle the payment; not forwarding",
			zap.String("payment_id", p.Identifier), zap.String("txid", txid), zap.Error(err))
		ge := refuse(http.StatusConflict, "blockchain_mismatch", "the blockchain transaction does not settle this payment: %v", err)
		ge.cause = err
		return ge
	}
	return nil
}
