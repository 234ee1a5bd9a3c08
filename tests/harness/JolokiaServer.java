import java.util.Collections;

import org.eclipse.jetty.security.ConstraintMapping;
import org.eclipse.jetty.security.ConstraintSecurityHandler;
import org.eclipse.jetty.security.HashLoginService;
import org.eclipse.jetty.security.UserStore;
import org.eclipse.jetty.security.authentication.BasicAuthenticator;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.servlet.ServletContextHandler;
import org.eclipse.jetty.servlet.ServletHolder;
import org.eclipse.jetty.util.security.Constraint;
import org.eclipse.jetty.util.security.Password;
import org.jolokia.http.AgentServlet;

/** Jolokia's agent servlet on 127.0.0.1:PORT; with USER PASSWORD, behind basic auth. */
public class JolokiaServer {
    public static void main(String[] args) throws Exception {
        Server server = new Server(new java.net.InetSocketAddress("127.0.0.1", Integer.parseInt(args[0])));
        ServletContextHandler ctx = new ServletContextHandler(ServletContextHandler.SECURITY);
        ctx.addServlet(new ServletHolder(new AgentServlet()), "/jolokia/*");
        if (args.length >= 3) {
            UserStore users = new UserStore();
            users.addUser(args[1], new Password(args[2]), new String[] {"jolokia"});
            HashLoginService login = new HashLoginService("jolokia");
            login.setUserStore(users);
            Constraint constraint = new Constraint(Constraint.__BASIC_AUTH, "jolokia");
            constraint.setAuthenticate(true);
            ConstraintMapping mapping = new ConstraintMapping();
            mapping.setPathSpec("/*");
            mapping.setConstraint(constraint);
            ConstraintSecurityHandler security = new ConstraintSecurityHandler();
            security.setConstraintMappings(Collections.singletonList(mapping));
            security.setAuthenticator(new BasicAuthenticator());
            security.setLoginService(login);
            ctx.setSecurityHandler(security);
            server.addBean(login);
        }
        server.setHandler(ctx);
        server.start();
        System.out.println("ready " + ((org.eclipse.jetty.server.ServerConnector) server.getConnectors()[0]).getLocalPort());
        server.join();
    }
}
