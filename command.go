package piguard

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "pi-guard",
		Usage: "deliveries|retry|resolve|unblock [--config <file> [--adapter <name>] | --address <admin>]",
		Short: "Lists pi_guard's owed payment deliveries, retries or resolves one, unblocks a user's pending payment",
		Long: `
Acts on pi_guard's payments (those Pi completed that the app has not accepted
yet, and those that block their user at Pi) through the admin API of a running
Caddy. The admin address is found as caddy reload finds it: --address if
given, else the admin address of the config named by --config (and
--adapter), or of ./Caddyfile if there is one, else localhost:2019.

  caddy pi-guard deliveries [--state pending|exhausted] [--json]
      lists the owed deliveries, oldest first
  caddy pi-guard retry <paymentId>
      sends one again now, with a fresh attempt budget (needs redeliver_to)
  caddy pi-guard resolve <paymentId> --note "<what you did>"
      records that the payment reached the app by other means
  caddy pi-guard unblock <paymentId> | --user <uid>
      settles at Pi a payment that blocks its user ("You already have a
      pending payment on this app"): completes it and sends it to the app
      when Pi shows a verified transaction, cancels it when it has none
      (--user: every payment of that user the guard approved and watches)

The exit status is 0 when the action succeeded (a retry the app refused, or an
unblocked payment the app has not accepted, exits 1).
See docs/operations.md.`,
		CobraFunc: piGuardCommand,
	})
}

// piGuardCommand adds the flags and subcommands of caddy pi-guard to cmd.
func piGuardCommand(cmd *cobra.Command) {
	cmd.PersistentFlags().String("address", "", "the admin API address of the running Caddy, if not the one of --config (default localhost:2019)")
	cmd.PersistentFlags().StringP("config", "c", "", "the running Caddy's config file, to read its admin address from (default ./Caddyfile, if any)")
	cmd.PersistentFlags().StringP("adapter", "a", "", "the config adapter of --config (e.g. caddyfile)")
	list := &cobra.Command{
		Use:   "deliveries",
		Short: "List owed deliveries (pending and exhausted)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			state, _ := c.Flags().GetString("state")
			asJSON, _ := c.Flags().GetBool("json")
			addr, err := adminAddress(c)
			if err != nil {
				return err
			}
			return cmdDeliveries(c.OutOrStdout(), addr, state, asJSON)
		},
	}
	list.Flags().String("state", "", "only pending or only exhausted deliveries")
	list.Flags().Bool("json", false, "print the admin API's JSON")
	retry := &cobra.Command{
		Use:   "retry <paymentId>",
		Short: "Send an owed delivery to the app again now",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			addr, err := adminAddress(c)
			if err != nil {
				return err
			}
			return cmdRetry(c.OutOrStdout(), addr, args[0])
		},
	}
	resolve := &cobra.Command{
		Use:   "resolve <paymentId> --note <text>",
		Short: "Record that an owed payment reached the app by other means",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			note, _ := c.Flags().GetString("note")
			addr, err := adminAddress(c)
			if err != nil {
				return err
			}
			return cmdResolve(c.OutOrStdout(), addr, args[0], note)
		},
	}
	resolve.Flags().String("note", "", "what you did, kept with the record and logged (required)")
	unblock := &cobra.Command{
		Use:   "unblock <paymentId> | --user <uid>",
		Short: "Complete or cancel at Pi a pending payment that blocks its user",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			user, _ := c.Flags().GetString("user")
			if (len(args) == 1) == (user != "") {
				return fmt.Errorf("unblock takes a payment id or --user <uid>, one of the two")
			}
			addr, err := adminAddress(c)
			if err != nil {
				return err
			}
			if user != "" {
				return cmdUnblockUser(c.OutOrStdout(), addr, user)
			}
			return cmdUnblock(c.OutOrStdout(), addr, args[0])
		},
	}
	unblock.Flags().String("user", "", "the user's uid (Pi's user_uid, as GET /pi_guard/watched lists it)")
	for _, sub := range []*cobra.Command{list, retry, resolve, unblock} {
		sub.SilenceUsage = true
		cmd.AddCommand(sub)
	}
}

// adminAddress is the admin API address of the running Caddy, determined
// as caddy reload determines it: --address, else the admin address in the
// config of --config (with --adapter), or of ./Caddyfile when there is one,
// else Caddy's default.
func adminAddress(c *cobra.Command) (string, error) {
	addr, _ := c.Flags().GetString("address")
	if addr != "" {
		return addr, nil
	}
	config, _ := c.Flags().GetString("config")
	adapter, _ := c.Flags().GetString("adapter")
	loaded, file, _, err := caddycmd.LoadConfig(config, adapter)
	if err == nil {
		addr, err = caddycmd.DetermineAdminAPIAddress("", loaded, file, adapter)
	}
	if err != nil {
		return "", fmt.Errorf("finding the admin address in the config %s: %w (or give it with --address)", cmp.Or(config, "./Caddyfile"), err)
	}
	return addr, nil
}

// adminDo sends one request to the admin API and decodes its JSON answer
// into out. Caddy's errors come back as {"error": "..."}.
func adminDo(addr, method, uri string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	resp, err := caddycmd.AdminAPIRequest(addr, method, uri, nil, rd)
	if err != nil {
		return fmt.Errorf("admin API at %s: %w", addr, readableAdminError(err))
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("admin API at %s: unreadable answer: %w (is pi_guard in this Caddy?)", addr, err)
	}
	return nil
}

// readableAdminError turns "caddy responded with error: HTTP 409:
// {"error":"nothing is owed..."}" into the message alone.
func readableAdminError(err error) error {
	msg := err.Error()
	if i := strings.Index(msg, "{"); i >= 0 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal([]byte(msg[i:]), &e) == nil && e.Error != "" {
			return fmt.Errorf("%s%s", msg[:i], e.Error)
		}
	}
	return err
}

func cmdDeliveries(w io.Writer, addr, state string, asJSON bool) error {
	uri := "/pi_guard/deliveries"
	if state != "" {
		uri += "?state=" + url.QueryEscape(state)
	}
	var rows []owedDelivery
	if err := adminDo(addr, http.MethodGet, uri, nil, &rows); err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, "no owed deliveries")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PAYMENT ID\tSTATE\tATTEMPTS\tAMOUNT\tCOMPLETED\tNEXT ATTEMPT\tLAST ERROR")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", r.PaymentID, r.State, r.Attempts, r.Amount,
			stamp(r.Completed), stamp(r.NextAttempt), r.LastError)
	}
	return tw.Flush()
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func cmdRetry(w io.Writer, addr, id string) error {
	if err := piclient.ValidatePaymentID(id); err != nil {
		return fmt.Errorf("%q is not a payment id: %w", id, err)
	}
	var res retryResult
	if err := adminDo(addr, http.MethodPost, "/pi_guard/deliveries/"+id+"/retry", nil, &res); err != nil {
		return err
	}
	d := res.Delivery
	switch res.Result {
	case "delivered":
		_, err := fmt.Fprintf(w, "payment %s delivered: the app accepted it\n", id)
		return err
	case "queued":
		_, err := fmt.Fprintf(w, "payment %s is due now: another worker holds it; run `caddy pi-guard deliveries` to follow it\n", id)
		return err
	}
	return fmt.Errorf("payment %s: the app did not accept it (%s); it stays pending, next attempt %s, %d attempt(s) used of a fresh budget",
		id, d.LastError, stamp(d.NextAttempt), d.Attempts)
}

func cmdResolve(w io.Writer, addr, id, note string) error {
	if err := piclient.ValidatePaymentID(id); err != nil {
		return fmt.Errorf("%q is not a payment id: %w", id, err)
	}
	if strings.TrimSpace(note) == "" {
		return fmt.Errorf(`resolve needs --note "<how the payment reached the app>", kept with the record and logged`)
	}
	var res resolution
	if err := adminDo(addr, http.MethodPost, "/pi_guard/deliveries/"+id+"/resolve", map[string]string{"note": note}, &res); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "payment %s resolved (was %s after %d attempt(s)): %s\n", id, res.PreviousState, res.Attempts, res.Note)
	return err
}

// cmdUnblock unblocks one payment through the admin API and prints what
// the guard did. It fails when the app has not accepted a completed
// payment, so that a script notices.
func cmdUnblock(w io.Writer, addr, id string) error {
	if err := piclient.ValidatePaymentID(id); err != nil {
		return fmt.Errorf("%q is not a payment id: %w", id, err)
	}
	var res unblockResult
	if err := adminDo(addr, http.MethodPost, "/pi_guard/payments/"+id+"/unblock", nil, &res); err != nil {
		return err
	}
	if _, err := fmt.Fprintln(w, res.Message); err != nil {
		return err
	}
	if (res.Result == unblockCompleted || res.Result == unblockAlreadyCompleted) && !res.AppTold {
		return fmt.Errorf("payment %s: the app has not accepted it yet", id)
	}
	return nil
}

// cmdUnblockUser unblocks every payment of user uid on the guard's watch
// list (approved, not yet completed or cancelled).
func cmdUnblockUser(w io.Writer, addr, uid string) error {
	var watched []watchedPayment
	if err := adminDo(addr, http.MethodGet, "/pi_guard/watched", nil, &watched); err != nil {
		return err
	}
	var failed []string
	n := 0
	for _, p := range watched {
		if p.UserUID != uid {
			continue
		}
		n++
		if err := cmdUnblock(w, addr, p.PaymentID); err != nil {
			fmt.Fprintf(w, "payment %s: %v\n", p.PaymentID, err)
			failed = append(failed, p.PaymentID)
		}
	}
	switch {
	case n == 0:
		return fmt.Errorf("the guard watches no payment of user %s (it lists the payments it approved that are not completed or cancelled: caddy pi-guard unblock <paymentId> takes any other)", uid)
	case len(failed) > 0:
		return fmt.Errorf("%d of %d payment(s) of user %s not fully settled: %s", len(failed), n, uid, strings.Join(failed, ", "))
	}
	return nil
}
