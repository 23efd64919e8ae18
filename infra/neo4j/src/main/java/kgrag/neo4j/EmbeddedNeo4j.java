package kgrag.neo4j;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.SecureRandom;
import java.util.HexFormat;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.ConnectorPortRegister;
import org.neo4j.configuration.connectors.ConnectorType;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.kernel.internal.GraphDatabaseAPI;

/**
 * Neo4j Community in this JVM, Bolt on a loopback port, for kgrag's tests and local use.
 *
 * <p>Usage: {@code EmbeddedNeo4j HOME CONF [PORT]}. HOME holds the databases, logs and the
 * generated password, so data and credentials persist across restarts; CONF is a neo4j.conf
 * (infra/neo4j/neo4j.conf). PORT 0 (the default) takes a free loopback port. Once Bolt accepts connections the URI is written to {@code HOME/bolt.uri};
 * SIGTERM shuts the databases down cleanly. With {@code KGRAG_NEO4J_WATCH_PID} set, the
 * server also shuts down once that process is gone (a killed test run leaves no server).
 */
public final class EmbeddedNeo4j {

    private EmbeddedNeo4j() {}

    public static void main(String[] args) throws Exception {
        if (args.length < 2 || args.length > 3) {
            System.err.println("usage: EmbeddedNeo4j HOME CONF [PORT]");
            System.exit(2);
        }
        Path home = Path.of(args[0]).toAbsolutePath();
        Path conf = Path.of(args[1]).toAbsolutePath();
        int port = args.length == 3 ? Integer.parseInt(args[2]) : 0;
        Files.createDirectories(home);
        Files.deleteIfExists(home.resolve("bolt.uri"));

        DatabaseManagementService dbms =
                new DatabaseManagementServiceBuilder(home)
                        .loadPropertiesFromFile(conf)
                        .setConfig(BoltConnector.listen_address, new SocketAddress("127.0.0.1", port))
                        .build();
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            dbms.shutdown();
            stopped.countDown();
        }, "kgrag-neo4j-shutdown"));

        watchOwner(System.getenv("KGRAG_NEO4J_WATCH_PID"));
        ensurePassword(dbms, home.resolve("password"));
        GraphDatabaseAPI db = (GraphDatabaseAPI) dbms.database("neo4j");
        var bolt = db.getDependencyResolver()
                .resolveDependency(ConnectorPortRegister.class)
                .getLocalAddress(ConnectorType.BOLT);
        String uri = "bolt://127.0.0.1:" + bolt.getPort();
        writeAtomically(home.resolve("bolt.uri"), uri + "\n");
        System.out.println("kgrag-neo4j ready: " + uri + " (Neo4j " + neo4jVersion(db) + ")");
        stopped.await();
    }

    /**
     * The neo4j user's password: generated on the first start (then stored, owner-readable
     * only), reused afterwards. Written to the file only once the database has it.
     */
    static void ensurePassword(DatabaseManagementService dbms, Path file) throws IOException {
        if (Files.exists(file)) {
            return;
        }
        byte[] bytes = new byte[18];
        new SecureRandom().nextBytes(bytes);
        String password = HexFormat.of().formatHex(bytes);
        dbms.database("system").executeTransactionally(
                "ALTER USER neo4j SET PASSWORD $password CHANGE NOT REQUIRED",
                Map.of("password", password));
        Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
        Files.deleteIfExists(tmp);
        Files.createFile(tmp, PosixFilePermissions.asFileAttribute(
                PosixFilePermissions.fromString("rw-------")));
        Files.writeString(tmp, password + "\n", StandardCharsets.UTF_8);
        Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE);
    }

    /** Exit (through the shutdown hook) when the owning process has ended. */
    static void watchOwner(String pid) {
        if (pid == null || pid.isBlank()) {
            return;
        }
        long owner = Long.parseLong(pid.trim());
        Thread watcher = new Thread(() -> {
            while (ProcessHandle.of(owner).map(ProcessHandle::isAlive).orElse(false)) {
                try {
                    Thread.sleep(2000);
                } catch (InterruptedException e) {
                    return;
                }
            }
            System.out.println("kgrag-neo4j: owner process " + owner + " ended; shutting down");
            System.exit(0);
        }, "kgrag-neo4j-owner-watch");
        watcher.setDaemon(true);
        watcher.start();
    }

    static void writeAtomically(Path file, String text) throws IOException {
        Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
        Files.writeString(tmp, text, StandardCharsets.UTF_8);
        Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    }

    static String neo4jVersion(GraphDatabaseAPI db) {
        return db.executeTransactionally(
                "CALL dbms.components() YIELD versions RETURN versions[0] AS v",
                Map.of(),
                result -> result.hasNext() ? String.valueOf(result.next().get("v")) : "?");
    }
}
