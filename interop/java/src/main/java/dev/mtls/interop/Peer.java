package dev.mtls.interop;

import java.io.BufferedReader;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SNIHostName;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLServerSocket;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManagerFactory;

/**
 * The Java (JSSE) peer of mtls-operator's interoperability suite (tests/interop).
 *
 * <pre>
 *   java -jar interop-java.jar server CASES.json   listen once per case, print {"ports": {...}}, then
 *                                                  one result line per connection until stdin closes
 *   java -jar interop-java.jar client CASES.json   connect once per case, print one result line each
 * </pre>
 *
 * <p>The standard library only: each side loads its key and chain from {@code keystore.p12} and its
 * trust anchors from {@code truststore.p12} with {@code KeyStore.getInstance("PKCS12")}, and builds an
 * {@code SSLContext} from the default KeyManagerFactory and the PKIX TrustManagerFactory. The server
 * requires a client certificate; the client checks the server's DNS name (endpoint identification
 * "HTTPS" against the SNI name). JSSE has no authoriser by SPIFFE ID, so {@code authorize} is unused.
 */
public final class Peer {
    private static final int TIMEOUT_MILLIS = 10_000;
    private static final int CLIENT_THREADS = 4;

    private Peer() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 2 || !(args[0].equals("server") || args[0].equals("client"))) {
            System.err.println("usage: interop-java server|client CASES.json");
            System.exit(2);
        }
        Object parsed = new Json(Files.readString(Path.of(args[1]))).value();
        List<Map<String, Object>> cases = new ArrayList<>();
        for (Object item : (List<?>) parsed) {
            @SuppressWarnings("unchecked")
            Map<String, Object> map = (Map<String, Object>) item;
            cases.add(map);
        }
        if (args[0].equals("server")) {
            serve(cases);
        } else {
            // A few handshakes at a time: a cold JVM spends most of each one waiting on itself.
            ExecutorService pool = Executors.newFixedThreadPool(CLIENT_THREADS);
            for (Map<String, Object> c : cases) {
                pool.submit(() -> emit(dial(c)));
            }
            pool.shutdown();
            pool.awaitTermination(10, TimeUnit.MINUTES);
        }
    }

    // --- TLS ------------------------------------------------------------------------------------

    private static KeyStore load(String path, char[] password) throws IOException, GeneralSecurityException {
        KeyStore store = KeyStore.getInstance("PKCS12");
        try (InputStream in = new FileInputStream(path)) {
            store.load(in, password);
        }
        return store;
    }

    static SSLContext context(Map<String, Object> c) throws IOException, GeneralSecurityException {
        char[] password = ((String) c.get("password")).toCharArray();
        KeyManagerFactory keys = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
        keys.init(load((String) c.get("keystore"), password), password);
        KeyStore anchors = load((String) c.get("truststore"), password);
        if (anchors.size() == 0) {
            throw new GeneralSecurityException("truststore.p12 holds no trusted certificate");
        }
        TrustManagerFactory trust = TrustManagerFactory.getInstance("PKIX");
        trust.init(anchors);
        SSLContext context = SSLContext.getInstance("TLS");
        context.init(keys.getKeyManagers(), trust.getTrustManagers(), null);
        return context;
    }

    private static void serve(List<Map<String, Object>> cases) throws IOException {
        Map<String, Object> ports = new LinkedHashMap<>();
        List<ServerSocket> listeners = new ArrayList<>();
        List<String> setupErrors = new ArrayList<>();
        InetAddress loopback = InetAddress.getByName("127.0.0.1");
        for (Map<String, Object> c : cases) {
            ServerSocket listener;
            String setupError = null;
            try {
                SSLServerSocket secure = (SSLServerSocket) context(c).getServerSocketFactory()
                        .createServerSocket(0, 50, loopback);
                secure.setNeedClientAuth(true);
                listener = secure;
            } catch (GeneralSecurityException | IOException e) {
                // Accept anyway, so the client's connection is answered and the setup error reported.
                listener = new ServerSocket(0, 50, loopback);
                setupError = describe(e);
            }
            ports.put((String) c.get("id"), (long) listener.getLocalPort());
            listeners.add(listener);
            setupErrors.add(setupError);
        }
        emit(Map.of("ports", ports));
        for (int i = 0; i < cases.size(); i++) {
            String id = (String) cases.get(i).get("id");
            ServerSocket listener = listeners.get(i);
            String setupError = setupErrors.get(i);
            Thread accepter = new Thread(() -> accept(listener, id, setupError));
            accepter.setDaemon(true);
            accepter.start();
        }
        // The driver closes stdin when every client has run.
        System.in.transferTo(OutputStream.nullOutputStream());
    }

    private static void accept(ServerSocket listener, String id, String setupError) {
        while (true) {
            java.net.Socket socket;
            try {
                socket = listener.accept();
            } catch (IOException e) {
                return;
            }
            if (setupError != null) {
                close(socket);
                emit(result(id, setupError, "setup"));
                continue;
            }
            Thread worker = new Thread(() -> emit(serveOne((SSLSocket) socket, id)));
            worker.setDaemon(true);
            worker.start();
        }
    }

    private static Map<String, Object> serveOne(SSLSocket socket, String id) {
        try (socket) {
            socket.setSoTimeout(TIMEOUT_MILLIS);
            socket.startHandshake();
            BufferedReader in = new BufferedReader(new InputStreamReader(socket.getInputStream(), StandardCharsets.UTF_8));
            if (in.readLine() == null) {
                return result(id, "connection closed before the client's line", "read");
            }
            OutputStream out = socket.getOutputStream();
            out.write("ok\n".getBytes(StandardCharsets.UTF_8));
            out.flush();
            return result(id, null, null);
        } catch (IOException e) {
            return result(id, describe(e), "handshake");
        }
    }

    static Map<String, Object> dial(Map<String, Object> c) {
        String id = (String) c.get("id");
        SSLContext context;
        try {
            context = context(c);
        } catch (GeneralSecurityException | IOException e) {
            return result(id, describe(e), "setup");
        }
        int port = ((Number) c.get("port")).intValue();
        try (SSLSocket socket = (SSLSocket) context.getSocketFactory().createSocket("127.0.0.1", port)) {
            socket.setSoTimeout(TIMEOUT_MILLIS);
            SSLParameters parameters = socket.getSSLParameters();
            String name = (String) c.get("server_name");
            parameters.setServerNames(List.of(new SNIHostName(name)));
            parameters.setEndpointIdentificationAlgorithm("HTTPS");
            socket.setSSLParameters(parameters);
            socket.startHandshake();
            OutputStream out = socket.getOutputStream();
            out.write("ping\n".getBytes(StandardCharsets.UTF_8));
            out.flush();
            // In TLS 1.3 only the server's answer proves that it accepted the client's certificate.
            String line = new BufferedReader(new InputStreamReader(socket.getInputStream(), StandardCharsets.UTF_8))
                    .readLine();
            if (line == null || line.isBlank()) {
                return result(id, "connection closed without an answer", "read");
            }
            return result(id, null, null);
        } catch (IOException e) {
            return result(id, describe(e), "handshake");
        }
    }

    private static String describe(Throwable e) {
        StringBuilder text = new StringBuilder(e.getClass().getSimpleName() + ": " + e.getMessage());
        for (Throwable cause = e.getCause(); cause != null && cause != e; cause = cause.getCause()) {
            text.append(" / ").append(cause.getMessage());
        }
        return text.toString();
    }

    private static void close(java.net.Socket socket) {
        try {
            socket.close();
        } catch (IOException ignored) {
            // Closing a socket the client will see closed anyway.
        }
    }

    // --- output -----------------------------------------------------------------------------------

    private static Map<String, Object> result(String id, String error, String stage) {
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("id", id);
        out.put("ok", error == null);
        if (error != null) {
            out.put("error", error);
            out.put("stage", stage);
        }
        return out;
    }

    private static synchronized void emit(Map<String, Object> value) {
        System.out.println(Json.write(value));
        System.out.flush();
    }

    /** Just enough JSON for the cases file (objects, arrays, strings, numbers, booleans, null). */
    static final class Json {
        private final String text;
        private int at;

        Json(String text) {
            this.text = text;
        }

        Object value() {
            skip();
            char c = text.charAt(at);
            if (c == '{') {
                return object();
            }
            if (c == '[') {
                return array();
            }
            if (c == '"') {
                return string();
            }
            for (String word : new String[] {"true", "false", "null"}) {
                if (text.startsWith(word, at)) {
                    at += word.length();
                    return word.equals("null") ? null : Boolean.valueOf(word);
                }
            }
            int start = at;
            while (at < text.length() && "+-0123456789.eE".indexOf(text.charAt(at)) >= 0) {
                at++;
            }
            if (start == at) {
                throw new IllegalArgumentException("unexpected " + c + " at " + at);
            }
            return Double.valueOf(text.substring(start, at));
        }

        private Map<String, Object> object() {
            Map<String, Object> map = new LinkedHashMap<>();
            at++;
            skip();
            if (text.charAt(at) == '}') {
                at++;
                return map;
            }
            while (true) {
                skip();
                String key = string();
                skip();
                expect(':');
                map.put(key, value());
                skip();
                if (text.charAt(at) == '}') {
                    at++;
                    return map;
                }
                expect(',');
            }
        }

        private List<Object> array() {
            List<Object> list = new ArrayList<>();
            at++;
            skip();
            if (text.charAt(at) == ']') {
                at++;
                return list;
            }
            while (true) {
                list.add(value());
                skip();
                if (text.charAt(at) == ']') {
                    at++;
                    return list;
                }
                expect(',');
            }
        }

        private String string() {
            expect('"');
            StringBuilder out = new StringBuilder();
            while (true) {
                char c = text.charAt(at++);
                if (c == '"') {
                    return out.toString();
                }
                if (c != '\\') {
                    out.append(c);
                    continue;
                }
                char escaped = text.charAt(at++);
                switch (escaped) {
                    case 'n' -> out.append('\n');
                    case 't' -> out.append('\t');
                    case 'r' -> out.append('\r');
                    case 'b' -> out.append('\b');
                    case 'f' -> out.append('\f');
                    case 'u' -> {
                        out.append((char) Integer.parseInt(text.substring(at, at + 4), 16));
                        at += 4;
                    }
                    default -> out.append(escaped);
                }
            }
        }

        private void expect(char c) {
            if (text.charAt(at) != c) {
                throw new IllegalArgumentException("expected " + c + " at " + at);
            }
            at++;
        }

        private void skip() {
            while (at < text.length() && Character.isWhitespace(text.charAt(at))) {
                at++;
            }
        }

        static String write(Object value) {
            if (value == null) {
                return "null";
            }
            if (value instanceof Boolean || value instanceof Number) {
                return value.toString();
            }
            if (value instanceof Map<?, ?> map) {
                List<String> parts = new ArrayList<>();
                for (Map.Entry<?, ?> entry : map.entrySet()) {
                    parts.add(write(String.valueOf(entry.getKey())) + ":" + write(entry.getValue()));
                }
                return "{" + String.join(",", parts) + "}";
            }
            String text = value.toString();
            StringBuilder out = new StringBuilder("\"");
            for (char c : text.toCharArray()) {
                switch (c) {
                    case '"' -> out.append("\\\"");
                    case '\\' -> out.append("\\\\");
                    case '\n' -> out.append("\\n");
                    case '\r' -> out.append("\\r");
                    case '\t' -> out.append("\\t");
                    default -> {
                        if (c < 0x20) {
                            out.append(String.format("\\u%04x", (int) c));
                        } else {
                            out.append(c);
                        }
                    }
                }
            }
            return out.append('"').toString();
        }
    }
}
