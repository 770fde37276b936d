// Types of caddy-pi-guard-verify, for any TypeScript target (ES5 included) and
// module setting, strict or not, without skipLibCheck (tested with TypeScript 5).

/** The error codes of docs/header.md and examples/testdata/vectors.json. */
export type VerificationErrorCode =
  | 'missing'
  | 'malformed'
  | 'signature'
  | 'expired'
  | 'not_yet_valid'
  | 'issuer'
  | 'audience'
  | 'kind'
  | 'binding'
  | 'not_completed'
  | 'payment_id';

/** A refusal: the request is not paid (verified) or not a notice (notice). */
export declare class VerificationError extends Error {
  constructor(code: VerificationErrorCode, message: string);
  readonly code: VerificationErrorCode;
}

/** 'verified' reads Pi-Payment-Verified, 'notice' reads Pi-Payment-Notice. */
export type TokenKind = 'verified' | 'notice';
/** For the incomplete route: verified when Pi-Payment-Verified is present, else notice. */
export type MiddlewareKind = TokenKind | 'verified-or-notice';
export type Phase = 'approve' | 'complete' | 'incomplete' | 'cancel' | 'reconcile';

/** The PaymentDTO exactly as Pi returned it to the guard. */
export interface PaymentDTO {
  identifier: string;
  user_uid: string;
  /** A binary float in JavaScript: compare amount_text instead. */
  amount: number;
  memo: string;
  metadata: { [key: string]: unknown } | null;
  from_address: string;
  to_address: string;
  direction: 'user_to_app' | 'app_to_user' | string;
  created_at: string;
  network: 'Pi Network' | 'Pi Testnet' | string;
  status: {
    developer_approved: boolean;
    transaction_verified: boolean;
    developer_completed: boolean;
    cancelled: boolean;
    user_cancelled: boolean;
  };
  transaction: { txid: string; verified: boolean; _link: string } | null;
  [field: string]: unknown;
}

/** The claims of a verified token or notice (docs/header.md, "Claims"). */
export interface PaymentClaims {
  iss: string;
  aud: string;
  /** The Pi payment id: record a payment once per sub. */
  sub: string;
  iat: number;
  exp: number;
  jti: string;
  /** Only 'verified' means paid. */
  kind: TokenKind;
  phase: Phase;
  payment: PaymentDTO;
  /** payment.amount as an exact decimal string ("2.5"): compare it with your price. Absent in tokens of old guards. */
  amount_text?: string;
  htm: string;
  htu: string;
  bsh: string;
  /** The Pi user, when the guard binds payments to users. */
  uid?: string;
  [claim: string]: unknown;
}

/** An HS256 key: the guard's signing_key (a string is trimmed, as the guard does). */
export interface SecretKey {
  secret: string | Uint8Array;
  kid?: string;
}
/** An Ed25519 public key as a JWK (as in the guard's JWK Set). */
export interface Ed25519Jwk {
  kty: 'OKP';
  crv: 'Ed25519';
  x: string;
  kid?: string;
  alg?: 'EdDSA';
  use?: 'sig';
}
export interface JwkKey {
  jwk: Ed25519Jwk;
  kid?: string;
}
/** An Ed25519 public key as PEM text or a crypto KeyObject. */
export interface PublicKey {
  publicKey: string | object;
  kid?: string;
}
export type Key = SecretKey | JwkKey | PublicKey;

export interface VerifierOptions {
  /** At least one key, here or in jwks. Give two while rotating. */
  keys?: Key[];
  /** The guard's JWK Set ({ keys: [...] }), parsed from its jwks.json. */
  jwks?: { keys: Array<{ [field: string]: unknown }> };
  /** Default 'caddy-pi-guard'. */
  issuer?: string;
  /** Default 'pi-app'. */
  audience?: string;
  /** Clock skew allowed on exp and iat, default 30. */
  leewaySeconds?: number;
  /** Current Unix time in seconds; for tests. */
  now?: () => number;
}

/** What verifyRequest checks: the request as the guard forwarded it. */
export interface RequestFields {
  method: string;
  /** The full URL path, as received (percent-encoded); a query string is ignored. */
  path: string;
  /** Every value of the header (two values are refused). */
  headerValues: ReadonlyArray<string>;
  /** The raw body bytes (or a string, as UTF-8). */
  body: Uint8Array | string;
}

/** The parts of an Express or node:http request the middleware reads. */
export interface RequestLike {
  method?: string;
  url?: string;
  originalUrl?: string;
  headers: { [name: string]: string | string[] | undefined };
  headersDistinct?: { [name: string]: string[] | undefined };
  body?: unknown;
  piPayment?: PaymentClaims;
}

/** The parts of an Express or node:http response the middleware writes on a refusal. */
export interface ResponseLike {
  statusCode: number;
  setHeader(name: string, value: string): unknown;
  end(chunk: string): unknown;
}

export type Middleware = (req: RequestLike, res: ResponseLike, next: (err?: unknown) => void) => void;

export interface MiddlewareOptions {
  /** The payment id the app expects for this request, if it knows one. */
  paymentId?: (req: RequestLike) => string | undefined;
}

export interface Verifier {
  /** Checks a token alone (no request binding). Throws VerificationError. */
  verifyToken(token: string, kind: TokenKind): PaymentClaims;
  /** Checks a request and its header of the kind. Throws VerificationError. */
  verifyRequest(request: RequestFields, kind: TokenKind, options?: { paymentId?: string }): PaymentClaims;
  /**
   * Express middleware: next() with the claims in req.piPayment, or 401
   * {"error":"payment_not_verified"|"notice_not_verified","message":...}.
   * Needs express.raw({ type: () => true }) before it.
   */
  middleware(kind?: MiddlewareKind, options?: MiddlewareOptions): Middleware;
}

export declare function createVerifier(options: VerifierOptions): Verifier;
/** base64url (no padding) SHA-256 of the body bytes: the bsh claim. */
export declare function bodyDigest(body: Uint8Array | string): string;
/** The fields verifyRequest needs, from a request whose raw body express.raw() read. */
export declare function fromExpress(req: RequestLike, kind?: TokenKind): RequestFields;
/** The full URL path without the query string (req.originalUrl, not req.path). */
export declare function requestPath(req: RequestLike): string;

export declare const HEADER_VERIFIED: 'Pi-Payment-Verified';
export declare const HEADER_NOTICE: 'Pi-Payment-Notice';
export declare const TYPES: { readonly verified: 'pi-payment-verified+jwt'; readonly notice: 'pi-payment-notice+jwt' };
export declare const DEFAULT_ISSUER: string;
export declare const DEFAULT_AUDIENCE: string;
export declare const DEFAULT_LEEWAY_SECONDS: number;
export declare const MAX_TOKEN_BYTES: number;

declare global {
  namespace Express {
    interface Request {
      /** The claims the caddy-pi-guard-verify middleware checked. */
      piPayment?: PaymentClaims;
    }
  }
}
