import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.servlet.ServletContextHandler;
import org.eclipse.jetty.servlet.ServletHolder;
import org.jolokia.http.AgentServlet;

public class JolokiaServer {
    public static void main(String[] args) throws Exception {
        Server server = new Server(new java.net.InetSocketAddress("127.0.0.1", Integer.parseInt(args[0])));
        ServletContextHandler ctx = new ServletContextHandler();
        ctx.addServlet(new ServletHolder(new AgentServlet()), "/jolokia/*");
        server.setHandler(ctx);
        server.start();
        System.out.println("ready " + ((org.eclipse.jetty.server.ServerConnector) server.getConnectors()[0]).getLocalPort());
        server.join();
    }
}
